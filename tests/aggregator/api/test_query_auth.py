"""The query token guards every query route; docs, probes and /metrics stay open (no data, no secret there).

Routes are enumerated from the app's OpenAPI document: a query route added later without the token fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from aggregator.api import create_app
from aggregator.settings import AggregatorSettings
from aggregator.sinks.memory import MemorySink
from tests.aggregator.servers import serve

QUERY_TOKEN = "query-s3cret-token"
INGEST_TOKEN = "ingest-s3cret-token"
QUERY_PREFIXES = ("/api/v1/model", "/apis")
OPEN_PATHS = ("/docs", "/openapi.json", "/healthz", "/readyz", "/metrics")


def _query_paths() -> list[str]:
    document = create_app(AggregatorSettings(), sink=MemorySink()).openapi()
    paths = sorted(path for path in document["paths"] if path.startswith(QUERY_PREFIXES))
    # Any value for a path parameter: authentication comes before the entity is looked up.
    return [re.sub(r"\{[^}]+\}", "x", path) for path in paths]


QUERY_PATHS = _query_paths()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    settings = AggregatorSettings(
        query_token=QUERY_TOKEN, KPULSE_INGEST_TOKEN=INGEST_TOKEN, query_window_seconds=60
    )
    with serve(create_app(settings, sink=MemorySink())) as base:
        yield base


def test_there_are_query_routes_to_check() -> None:
    assert len(QUERY_PATHS) == 25


@pytest.mark.parametrize("path", QUERY_PATHS)
def test_every_query_route_requires_the_query_token(url: str, path: str) -> None:
    missing = requests.get(f"{url}{path}", timeout=5)
    wrong = requests.get(f"{url}{path}", headers={"Authorization": "Bearer nope"}, timeout=5)
    ingest_token = requests.get(
        f"{url}{path}", headers={"Authorization": f"Bearer {INGEST_TOKEN}"}, timeout=5
    )
    right = requests.get(f"{url}{path}", headers={"Authorization": f"Bearer {QUERY_TOKEN}"}, timeout=5)

    for refused in (missing, wrong, ingest_token):
        assert refused.status_code == 401, (path, refused.text)
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert QUERY_TOKEN not in refused.text
    assert right.status_code != 401, right.text
    assert right.status_code < 500


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_docs_probes_and_metrics_need_no_token(url: str, path: str) -> None:
    response = requests.get(f"{url}{path}", timeout=5)

    assert response.status_code == 200
    assert QUERY_TOKEN not in response.text
    assert INGEST_TOKEN not in response.text


def test_the_query_token_does_not_open_ingest(url: str) -> None:
    response = requests.post(
        f"{url}/api/v1/ingest", data=b"{}", headers={"Authorization": f"Bearer {QUERY_TOKEN}"}, timeout=5
    )

    assert response.status_code == 401
