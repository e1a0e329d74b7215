"""Property-based fuzzing (schemathesis) of ingest, health and metrics against the real app under uvicorn.

The ingest route reads its body itself, so its OpenAPI operation declares none; the test gives it the wire
``Batch`` schema, so generated bodies reach the pipeline (valid envelopes with arbitrary values) as well as
the validation (schemathesis also mutates them). Checks: no 5xx, status codes, content types and bodies as
documented; the service answers /healthz and accepts a normal batch afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aggregator.api import create_app
from aggregator.settings import AggregatorSettings
from aggregator.sinks.memory import MemorySink
from collector.wire import Batch
from tests.aggregator.api.batches import gzip_body, make_batch
from tests.aggregator.servers import serve

EXAMPLES = {"POST /api/v1/ingest": 150, "GET /healthz": 10, "GET /readyz": 10, "GET /metrics": 10}
MODES = {
    "positive": schemathesis.GenerationMode.POSITIVE,
    "negative": schemathesis.GenerationMode.NEGATIVE,
}
ROUTES = r"^/(api/v1/ingest|healthz|readyz|metrics)$"


def _schema() -> dict[str, Any]:
    document = create_app(AggregatorSettings(), sink=MemorySink()).openapi()
    batch = Batch.model_json_schema(ref_template="#/components/schemas/{model}")
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(batch.pop("$defs", {}))
    components["Batch"] = batch
    document["paths"]["/api/v1/ingest"]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}},
    }
    return document


def _operations() -> dict[str, schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_dict(_schema()).include(path_regex=ROUTES)
    operations = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations[f"{operation.method.upper()} {operation.path}"] = operation
    return operations


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(create_app(AggregatorSettings(), sink=MemorySink())) as base:
        yield base


def test_the_fuzz_covers_ingest_health_and_metrics() -> None:
    assert sorted(OPERATIONS) == sorted(EXAMPLES)


@pytest.mark.parametrize(
    ("label", "mode"),
    # A GET without parameters has no negative case: only ingest is fuzzed with invalid input.
    [(label, "positive") for label in sorted(EXAMPLES)] + [("POST /api/v1/ingest", "negative")],
)
def test_no_route_errors_or_breaks_its_schema(label: str, mode: str, url: str) -> None:
    operation = OPERATIONS[label]
    calls = 0
    statuses: set[int] = set()

    # Fresh batch ids, so generated batches are processed rather than acknowledged as resends.
    @given(case=operation.as_strategy(MODES[mode]), salt=st.uuids())
    @settings(
        max_examples=EXAMPLES[label],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: schemathesis.Case, salt: object) -> None:
        nonlocal calls
        if isinstance(case.body, dict) and isinstance(case.body.get("batch_id"), str):
            case.body["batch_id"] = str(salt)
        checks = [not_a_server_error, status_code_conformance, content_type_conformance]
        if label != "GET /metrics":  # Prometheus text, not JSON
            checks.append(response_schema_conformance)
        response = case.call_and_validate(base_url=url, checks=checks, timeout=10)
        statuses.add(response.status_code)
        calls += 1

    fuzz()
    assert calls > 0
    if label == "POST /api/v1/ingest":
        # Both modes must really exercise what they aim at: the pipeline, and the refusals.
        assert (202 in statuses) if mode == "positive" else (statuses & {400, 415, 422}), statuses
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    normal = requests.post(
        f"{url}/api/v1/ingest",
        data=gzip_body(make_batch(batch_id=f"after-{label}-{mode}")),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert normal.status_code == 202, normal.text
