"""Hostile and absurd ingest bodies over real HTTP: per-sample rejection, nesting, size, encodings, slowness.

Invalid samples in a valid envelope are left out and reported without costing the node the rest of its
scrape; anything else hostile is refused with a 4xx, never a 5xx, and the service stays healthy.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from aggregator.api import create_app
from aggregator.api.batch_parsing import parse_batch
from aggregator.catalog import Level
from aggregator.settings import AggregatorSettings
from aggregator.sinks.memory import MemorySink
from tests.aggregator.api.batches import json_body, make_batch
from tests.aggregator.servers import serve

JSON = {"Content-Type": "application/json"}
GZIP = {**JSON, "Content-Encoding": "gzip"}


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def url(sink: MemorySink) -> Iterator[str]:
    with serve(create_app(AggregatorSettings(max_body_bytes=1 << 20), sink=sink)) as base:
        yield base


def _raw_batch(containers: int = 4) -> dict[str, Any]:
    raw: dict[str, Any] = make_batch(containers=containers).model_dump(mode="json", exclude_none=True)
    return raw


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{url}/api/v1/ingest", data=body, headers=headers or JSON, timeout=10)


def _metrics(url: str) -> str:
    return requests.get(f"{url}/metrics", timeout=5).text


def _assert_healthy(url: str) -> None:
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    assert _post(url, json_body(make_batch(batch_id="still-healthy"))).status_code == 202


# --- absurd values: rejected per sample, the rest of the batch kept ---------------------------------------


@pytest.mark.parametrize(
    ("field", "literal", "message"),
    [
        ("cpu_usage_nanoseconds_total", "-5", "greater than or equal to 0"),
        ("cpu_usage_nanoseconds_total", "NaN", "finite number"),
        ("memory_usage_bytes", "Infinity", "finite number"),
        ("memory_usage_bytes", "-Infinity", "finite number"),
        ("memory_usage_bytes", "1e308", "integer"),
        ("memory_usage_bytes", "18446744073709551616", "less than or equal to 9223372036854775807"),
        ("timestamp_ns", "1.5", "fractional part"),
    ],
)
def test_an_absurd_value_rejects_its_sample_and_keeps_the_rest_of_the_batch(
    url: str, sink: MemorySink, field: str, literal: str, message: str
) -> None:
    raw = _raw_batch(containers=4)
    raw["containers"][2][field] = "__ABSURD__"
    # NaN and Infinity are not JSON, but some encoders write them: put the literal in by hand.
    body = json.dumps(raw).replace('"__ABSURD__"', literal).encode()

    response = _post(url, body)

    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted_containers"] == 3
    assert answer["rejected_samples"] == 1
    (rejected,) = answer["rejected"]
    assert (rejected["kind"], rejected["index"]) == ("container", 2)
    assert rejected["reason"].startswith(f"{field}: ")
    assert message in rejected["reason"]
    sink.flush()
    containers = sorted(p.tags["container"] for p in sink.points if p.measurement == Level.CONTAINER)
    assert containers == ["app0", "app1", "app3"]
    metrics = _metrics(url)
    assert 'kpulse_aggregator_samples_received_total{kind="container",outcome="rejected"} 1.0' in metrics
    assert 'kpulse_aggregator_samples_received_total{kind="container",outcome="accepted"} 3.0' in metrics
    assert 'kpulse_aggregator_batches_received_total{outcome="accepted"} 1.0' in metrics


def test_bad_pods_and_a_bad_node_sample_are_rejected_on_their_own_and_logged_with_the_node(
    url: str, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _raw_batch(containers=2)
    raw["pods"][1]["network"]["rx_bytes_total"] = -1
    raw["pods"].append("not a pod")
    raw["node_sample"]["memory_usage_bytes"] = -1
    raw["containers"].append({"container_id": "x"})

    with caplog.at_level(logging.WARNING, logger="aggregator.api.routes.ingest"):
        response = _post(url, json.dumps(raw).encode())

    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted_containers"] == 2
    where = [(r["kind"], r["index"]) for r in answer["rejected"]]
    assert where == [("container", 2), ("pod", 1), ("pod", 2), ("node", 0)]
    assert (
        "network.rx_bytes_total: Input should be greater than or equal to 0"
        in answer["rejected"][1]["reason"]
    )
    assert "... and" in answer["rejected"][0]["reason"]  # many missing fields: the first few, then a count
    sink.flush()
    nodes = [p for p in sink.points if p.measurement == Level.NODE]
    assert nodes
    assert "memory_usage_bytes" not in nodes[0].fields
    (line,) = [r.getMessage() for r in caplog.records if "invalid sample" in r.getMessage()]
    assert line.startswith("node 'n1': 4 invalid sample(s) left out of batch")


def test_the_reason_never_echoes_the_submitted_value(url: str) -> None:
    raw = _raw_batch(containers=1)
    raw["containers"][0]["namespace"] = "x" * 300 + "SECRET-LOOKING-VALUE"

    answer = _post(url, json.dumps(raw).encode()).json()

    assert answer["rejected_samples"] == 1
    assert "SECRET-LOOKING-VALUE" not in json.dumps(answer)


def test_only_the_first_hundred_rejections_are_listed_but_all_are_counted(url: str) -> None:
    raw = _raw_batch(containers=1)
    raw["containers"] += [{"container_id": f"bad-{i}"} for i in range(250)]

    answer = _post(url, json.dumps(raw).encode()).json()

    assert (answer["accepted_containers"], answer["rejected_samples"]) == (1, 250)
    assert len(answer["rejected"]) == 100
    assert 'kind="container",outcome="rejected"} 250.0' in _metrics(url)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw.update(node=""), "node: String should have at least 1 character"),
        (lambda raw: raw.update(interval_seconds="NaN"), "interval_seconds"),
        (lambda raw: raw.update(scraped_at_ns=-1), "scraped_at_ns"),
        (lambda raw: raw.update(containers={"not": "a list"}), "containers: Input should be a valid array"),
        (lambda raw: raw.update(unexpected=1), "unexpected: Extra inputs are not permitted"),
    ],
)
def test_a_bad_envelope_still_refuses_the_whole_batch_with_422(
    url: str, sink: MemorySink, mutate: Any, message: str
) -> None:
    raw = _raw_batch()
    mutate(raw)

    response = _post(url, json.dumps(raw).encode())

    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert sink.pending == 0


def test_a_valid_batch_is_parsed_once_and_an_invalid_one_keeps_its_order() -> None:
    raw = _raw_batch(containers=5)
    raw["containers"][1]["memory_usage_bytes"] = -1
    raw["containers"][3]["memory_usage_bytes"] = -1

    parsed = parse_batch(json.dumps(raw).encode())
    clean = parse_batch(json_body(make_batch(containers=5)))

    assert [c.container for c in parsed.batch.containers] == ["app0", "app2", "app4"]
    assert [r.index for r in parsed.rejected] == [1, 3]
    assert clean.rejected == []
    assert len(clean.batch.containers) == 5


# --- JSON that is too deep or too big ---------------------------------------------------------------------


def test_ten_thousand_levels_of_nesting_are_refused_with_422(url: str) -> None:
    depth = 10_000
    for body in (
        b"[" * depth + b"]" * depth,
        b'{"batch_id": "x", "containers": ' + b"[" * depth + b"]" * depth + b"}",
        b'{"a":' * depth + b"1" + b"}" * depth,
    ):
        response = _post(url, body)
        assert response.status_code == 422, response.text
        assert "recursion limit exceeded" in response.json()["detail"]
    _assert_healthy(url)


def test_a_huge_array_is_refused_with_422_and_more_samples_than_allowed_too(url: str) -> None:
    numbers = b"[" + b",".join([b"1"] * 200_000) + b"]"
    raw = _raw_batch(containers=1)
    raw["containers"] = raw["containers"] * 20_001

    plain = _post(url, numbers)
    too_many = _post(url, gzip.compress(json.dumps(raw).encode()), headers=GZIP)

    assert plain.status_code == 422
    assert too_many.status_code in (413, 422), too_many.text  # over the body limit once decompressed
    _assert_healthy(url)


# --- hostile requests: wrong types, broken encodings, garbage, giant headers, slow bodies ------------------


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (json_body(make_batch()), {"Content-Type": "text/plain"}, 202),  # the type is not what we trust
        (b"<xml/>", {"Content-Type": "application/xml"}, 422),
        (gzip.compress(b"\x00\xff\xfe binary, not JSON"), GZIP, 422),
        (gzip.compress(json_body(make_batch()))[:-9], GZIP, 400),  # truncated
        (gzip.compress(b"{}")[:5], GZIP, 400),
        ("\ud800\udfff".encode("utf-8", "surrogatepass"), JSON, 422),
        ('{"batch_id": "\u202e\ufeff🙂\u0000"}'.encode(), JSON, 422),
        (b"\xff\xfe\x00\x00garbage", JSON, 422),
        (b"", JSON, 422),
        (b"null", JSON, 422),
        (b'"a string"', JSON, 422),
        (json_body(make_batch()), {**JSON, "Content-Encoding": "gzip, gzip"}, 415),
        (json_body(make_batch()), {**JSON, "Content-Encoding": "deflate"}, 415),
    ],
)
def test_hostile_bodies_get_a_4xx_and_the_service_stays_healthy(
    url: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = _post(url, body, headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    _assert_healthy(url)


def test_giant_headers_are_refused_by_the_server_not_crashed_on(url: str) -> None:
    host, port = _address(url)
    with socket.create_connection((host, port), timeout=10) as conn:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            conn.sendall(
                b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * 200_000 + b"\r\n\r\n"
            )
        answer = _read_all(conn)
    # h11 gives up on a header block past its limit: a 4xx, or the connection closed without one.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    _assert_healthy(url)


def test_a_lying_content_length_does_not_hang_the_server(url: str) -> None:
    host, port = _address(url)
    body = json_body(make_batch())
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(
            b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body) + 1000}\r\n\r\n".encode()
            + body
        )
        conn.shutdown(socket.SHUT_WR)  # the promised remainder never comes
        answer = _read_all(conn)
    assert not answer.startswith(b"HTTP/1.1 5")
    _assert_healthy(url)


def test_a_slow_body_does_not_block_other_clients(url: str) -> None:
    host, port = _address(url)
    body = json_body(make_batch(batch_id="slow"))
    with socket.create_connection((host, port), timeout=10) as slow:
        slow.sendall(
            b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        started = time.monotonic()
        _assert_healthy(url)  # served while the slow client is mid-body
        assert time.monotonic() - started < 5
        for offset in range(10, len(body), 400):
            slow.sendall(body[offset : offset + 400])
        answer = _read_all(slow)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := conn.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
                break
    return b"".join(chunks)
