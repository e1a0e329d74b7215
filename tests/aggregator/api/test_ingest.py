"""``POST /api/v1/ingest`` over real HTTP (uvicorn in a thread): auth, limits, gzip, validation, dedup."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import types
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests

from aggregator.api import create_app
from aggregator.api.routes import ingest as ingest_route
from aggregator.catalog import Level
from aggregator.settings import AggregatorSettings
from aggregator.sinks.memory import MemorySink
from tests.aggregator.api.batches import SECOND, T0, gzip_body, json_body, make_batch
from tests.aggregator.servers import serve

GZIP = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
TOKEN = "ingest-s3cret-token"

Start = Callable[..., str]


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def start(sink: MemorySink) -> Iterator[Start]:
    """Start an app with the given settings and ``sink`` under uvicorn; returns its base URL."""
    with contextlib.ExitStack() as stack:

        def run(**settings: Any) -> str:
            app = create_app(AggregatorSettings(**settings), sink=sink)
            return stack.enter_context(serve(app))

        yield run


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{url}/api/v1/ingest", data=body, headers=GZIP if headers is None else headers, timeout=10
    )


def test_a_gzip_batch_is_accepted_and_its_points_reach_the_sink(start: Start, sink: MemorySink) -> None:
    url = start()
    batch = make_batch(containers=3)

    response = _post(url, gzip_body(batch))

    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted_containers"] == 3
    assert answer["duplicate"] is False
    sink.flush()
    written = sink.points
    assert answer["points"] == len(written)
    containers = [p for p in written if p.measurement == Level.CONTAINER]
    assert sorted(p.tags["container"] for p in containers) == ["app0", "app1", "app2"]
    assert {p.tags["node"] for p in written} == {"n1"}
    assert all(p.time_ns == T0 for p in written)
    assert {p.fields["memory_usage_bytes"] for p in containers} == {100 * 2**20 + i for i in range(3)}


def test_a_plain_json_body_is_accepted_too(start: Start) -> None:
    url = start()

    response = _post(url, json_body(make_batch()), headers={"Content-Type": "application/json"})

    assert response.status_code == 202, response.text


def test_a_resent_batch_is_acknowledged_as_duplicate_and_not_processed_again(
    start: Start, sink: MemorySink
) -> None:
    url = start()
    first_batch = make_batch()
    first = _post(url, gzip_body(first_batch))
    sink.flush()
    stored = len(sink.points)
    # The next scrape makes rates possible; resending it must not turn them into out-of-order samples.
    second_batch = make_batch(scraped_at_ns=T0 + 10 * SECOND)
    second = _post(url, gzip_body(second_batch))

    again = _post(url, gzip_body(second_batch))

    assert (first.status_code, second.status_code, again.status_code) == (202, 202, 200)
    assert again.json() == {**second.json(), "duplicate": True}
    sink.flush()
    assert len(sink.points) == stored + second.json()["points"]
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert 'kpulse_aggregator_batches_received_total{outcome="duplicate"} 1.0' in metrics
    assert 'kpulse_aggregator_rates_suppressed_total{reason="out_of_order"} 0.0' in metrics


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing bearer token"),
        ("Basic dXNlcjpwYXNz", "missing bearer token"),
        ("Bearer wrong-token", "invalid bearer token"),
    ],
)
def test_a_missing_or_wrong_token_is_refused_with_401(
    start: Start, sink: MemorySink, authorization: str | None, message: str
) -> None:
    url = start(KPULSE_INGEST_TOKEN=TOKEN)
    headers = dict(GZIP)
    if authorization is not None:
        headers["Authorization"] = authorization

    response = _post(url, gzip_body(make_batch()), headers=headers)

    assert response.status_code == 401
    assert message in response.json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert sink.pending == 0


def test_the_right_token_is_accepted(start: Start) -> None:
    url = start(KPULSE_INGEST_TOKEN=TOKEN)

    response = _post(url, gzip_body(make_batch()), headers={**GZIP, "Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 202, response.text


def test_a_blank_token_counts_as_unset_so_local_clients_need_none(start: Start) -> None:
    url = start(KPULSE_INGEST_TOKEN="  ")

    response = _post(url, gzip_body(make_batch()))

    assert response.status_code == 202, response.text


def test_without_a_token_remote_clients_are_refused_with_403_and_told_what_to_set() -> None:
    sink = MemorySink()
    app = create_app(AggregatorSettings(), sink=sink)

    async def post_from(client: tuple[str, int]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=client)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://aggregator") as http,
        ):
            return await http.post("/api/v1/ingest", content=gzip_body(make_batch()), headers=GZIP)

    remote = asyncio.run(post_from(("10.1.2.3", 40000)))
    mapped_loopback = asyncio.run(post_from(("::ffff:127.0.0.1", 40000)))
    ipv6_loopback = asyncio.run(post_from(("::1", 40000)))

    assert remote.status_code == 403
    assert "KPULSE_INGEST_TOKEN" in remote.json()["detail"]
    assert mapped_loopback.status_code == 202
    assert ipv6_loopback.status_code == 200  # the same batch again: a duplicate, but let in


def test_a_body_over_the_limit_is_refused_with_413_with_or_without_content_length(start: Start) -> None:
    url = start(max_body_bytes=4096)
    body = json_body(make_batch(containers=40))
    assert len(body) > 4096

    declared = _post(url, body, headers={"Content-Type": "application/json"})
    streamed = requests.post(  # chunked: no Content-Length, so the limit is enforced while reading
        f"{url}/api/v1/ingest",
        data=iter([body[i : i + 1000] for i in range(0, len(body), 1000)]),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert "exceeds the limit of 4096 bytes" in response.json()["detail"]


def test_a_gzip_body_that_decompresses_over_the_limit_is_refused_with_413(start: Start) -> None:
    url = start(max_body_bytes=4096)
    body = gzip_body(make_batch(containers=40))
    assert len(body) < 4096

    response = _post(url, body)

    assert response.status_code == 413
    assert "decompressed body exceeds the limit of 4096 bytes" in response.json()["detail"]


def test_a_gzip_bomb_is_refused_without_decompressing_it(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 1 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush()  # 256 MiB inflated
    assert len(bomb) < limit
    produced: list[int] = []

    class CountingDecompressor:
        def __init__(self, wbits: int) -> None:
            self._inner = zlib.decompressobj(wbits=wbits)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._inner.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    spy = types.SimpleNamespace(
        decompressobj=CountingDecompressor, MAX_WBITS=zlib.MAX_WBITS, error=zlib.error
    )
    monkeypatch.setattr(ingest_route, "zlib", spy)
    url = start(max_body_bytes=limit)

    response = _post(url, bomb)

    assert response.status_code == 413
    assert "decompressed body exceeds" in response.json()["detail"]
    assert sum(produced) <= limit + 1  # stopped one byte past the limit, not 256 MiB later


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "malformed gzip body"),
        (gzip.compress(b'{"batch_id": "x"}')[:-12], "malformed gzip body: truncated"),
        (gzip.compress(b"{}") + b"trailing", "malformed gzip body: data after the end"),
        (b"not gzip at all", "malformed gzip body"),
    ],
)
def test_malformed_gzip_is_refused_with_400(start: Start, body: bytes, message: str) -> None:
    url = start()

    response = _post(url, body)

    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_an_unsupported_content_encoding_is_refused_with_415(start: Start) -> None:
    url = start()

    response = _post(url, b"...", headers={"Content-Encoding": "br"})

    assert response.status_code == 415
    assert "unsupported Content-Encoding 'br'" in response.json()["detail"]


def test_invalid_json_is_refused_with_422(start: Start) -> None:
    url = start()

    response = _post(url, gzip.compress(b'{"batch_id": '))

    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid batch: body: Invalid JSON")


def test_a_schema_violation_is_refused_with_422_naming_the_locations(start: Start, sink: MemorySink) -> None:
    url = start()
    raw = make_batch().model_dump(mode="json", exclude_none=True)
    del raw["containers"][1]["timestamp_ns"]
    raw["containers"][0]["memory_usage_bytes"] = -1
    raw["source"] = "podman"
    body = gzip.compress(json.dumps(raw).encode())

    response = _post(url, body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "source: Input should be 'docker' or 'kubelet'" in detail
    assert "containers.0.memory_usage_bytes: Input should be greater than or equal to 0" in detail
    assert "containers.1.timestamp_ns: Field required" in detail
    assert sink.pending == 0


def test_refusals_are_counted_by_outcome_and_the_token_never_appears_in_metrics(start: Start) -> None:
    url = start(KPULSE_INGEST_TOKEN=TOKEN, max_body_bytes=4096)
    auth = {**GZIP, "Authorization": f"Bearer {TOKEN}"}
    _post(url, gzip_body(make_batch()))  # 401
    _post(url, b"junk", headers=auth)  # 400
    _post(url, gzip.compress(b"[]"), headers=auth)  # 422
    _post(url, gzip_body(make_batch(containers=40)), headers=auth)  # 413
    _post(url, gzip_body(make_batch()), headers=auth)  # 202

    response = requests.get(f"{url}/metrics", timeout=5)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    for outcome in ("unauthorized", "malformed", "invalid", "too_large", "accepted"):
        assert f'kpulse_aggregator_batches_received_total{{outcome="{outcome}"}} 1.0' in text
    assert 'kpulse_aggregator_samples_received_total{kind="container",outcome="accepted"} 2.0' in text
    assert "kpulse_aggregator_ingest_request_seconds_count 4.0" in text  # timed once past auth
    assert TOKEN not in text
