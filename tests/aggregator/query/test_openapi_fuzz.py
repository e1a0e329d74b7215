"""Property-based fuzzing of every query route in the OpenAPI document (schemathesis) against the real app.

The app runs under uvicorn with real pipeline data in its window and real InfluxDB history behind it. Every
operation of the Heapster model API and of metrics.k8s.io gets generated requests (50 each); half of the
generated names are swapped for names that exist, so the 200 paths are exercised as much as the 404 ones.
Checks: no 5xx, status codes, content types, headers and bodies all as the OpenAPI document says.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aggregator.api import create_app
from aggregator.sinks.influx_v1 import InfluxV1Backend, quote_identifier
from aggregator.sinks.memory import MemorySink
from tests.aggregator.query.apps import RunningAggregator, running_aggregator, settings_for
from tests.aggregator.query.simulation import SimContainer, Simulation

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 50
QUERY_ROUTES = r"^/(api/v1/model|apis)"

KNOWN = {
    "node": ["node-1", "node-2"],
    "namespace": ["shop", "default"],
    "pod": ["web-1", "redis"],
    "name": ["web-1", "node-1", "redis"],
    "container": ["app", "redis"],
    "pods": ["web-1,web-2", "redis"],
    "metric": [
        "cpu/usage_rate",
        "memory/working_set",
        "network/rx_rate",
        "cpu/node_capacity",
        "memory/limit",
    ],
}

_examples_run: list[int] = [0]


@pytest.fixture(scope="module")
def running(influx_url: str) -> Iterator[RunningAggregator]:
    database = f"kph8_{uuid.uuid4().hex[:12]}"
    sim = Simulation(
        containers=[
            SimContainer("shop", "web-1", "app", cpu_millicores=250, memory_limit_bytes=1 << 28),
            SimContainer("shop", "web-2", "app", cpu_millicores=700),
            SimContainer("default", "redis", "redis", node="node-2", cpu_millicores=1200),
        ],
        pod_labels={("shop", "web-1"): {"app": "web"}, ("default", "redis"): {"app": "redis"}},
        node_labels={"node-1": {"zone": "a"}},
    )
    with requests.Session() as session:
        backend = InfluxV1Backend(session, url=influx_url, database=database)
        backend.create_database()
        try:
            with running_aggregator(
                sim, scrapes=8, influx_url=influx_url, influx_database=database
            ) as running:
                yield running
        finally:
            backend.query(f"DROP DATABASE {quote_identifier(database)}", database=database)
    print(f"\nschemathesis: {_examples_run[0]} requests over the query API's operations")


def _operations() -> dict[str, schemathesis.APIOperation]:
    # The OpenAPI document of the real app, read without serving it, so each operation is its own test.
    app = create_app(settings_for(Simulation(containers=[])), sink=MemorySink())
    schema = schemathesis.openapi.from_dict(app.openapi()).include(path_regex=QUERY_ROUTES)
    operations = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations[f"{operation.method.upper()} {operation.path}"] = operation
    return operations


OPERATIONS = _operations()


def _pick(generated: str, known: list[str]) -> str:
    """Half the time (decided by the generated value itself, so a failure replays) a name that exists."""
    digest = hashlib.sha256(generated.encode()).digest()
    if digest[0] % 2:
        return generated
    return known[digest[1] % len(known)]


def test_the_fuzz_covers_every_query_route() -> None:
    paths = {label.split(" ", 1)[1] for label in OPERATIONS}
    assert len(OPERATIONS) == 25  # 17 Heapster model routes, 8 metrics.k8s.io ones
    assert "/api/v1/model/namespaces/{namespace}/pod-list/{pods}/metrics/{metric}" in paths
    assert "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}" in paths


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_query_route_errors_or_breaks_its_schema(label: str, running: RunningAggregator) -> None:
    operation = OPERATIONS[label]
    calls = 0

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: schemathesis.Case) -> None:
        nonlocal calls
        for name, value in list((case.path_parameters or {}).items()):
            if name in KNOWN and isinstance(value, str):
                case.path_parameters[name] = _pick(value, KNOWN[name])
        case.call_and_validate(
            base_url=running.url,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_headers_conformance,
                response_schema_conformance,
            ],
            timeout=30,
        )
        calls += 1

    fuzz()
    _examples_run[0] += calls
    assert calls > 0
