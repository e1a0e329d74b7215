"""The kubelet source against a real local HTTPS server serving the recorded captures with a token check.

The server (tests/collector/sources/fake_kubelet.py) uses a CA and a serving certificate generated here; it
answers like a kubelet (``/stats/summary``, ``/pods``) and like the API server (``/api/v1/nodes/<name>``),
and can be told to answer 401/403/500, garbage, a truncated body, or nothing at all. The source counts each
failure by cause and raises it with that cause, logging nothing itself: the agent logs episodes
(tests/collector/test_agent.py).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from collector.errors import SourceAuthError, SourceError
from collector.settings import CollectorSettings
from collector.sources import kubelet as kubelet_module
from collector.sources.kubelet import (
    KubeletSource,
    fetch_pods,
    fetch_summary,
    in_cluster_node_url,
    kubelet_base_url,
)
from collector.sources.kubelet_parse import parse_scrape
from tests.collector.sources.fake_kubelet import NODE, TOKEN, FakeKubelet, kubelet_files, serving
from tests.pki import TestCa

# --- a certificate authority and a serving certificate -----------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path
    """A CA that did not sign the server's certificate."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = TestCa("kpulse test cluster CA")
    server = ca.issue(directory, "duckboat-01", client=False, hosts=("127.0.0.1", "localhost"))
    other_ca = TestCa("some other CA").write(directory)
    return Pki(ca.write(directory), server.cert_file, server.key_file, other_ca)


@pytest.fixture
def kubelet(pki: Pki) -> Iterator[FakeKubelet]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    with serving(FakeKubelet(files=kubelet_files()), context) as fake:
        yield fake


@pytest.fixture
def read_only_kubelet() -> Iterator[FakeKubelet]:
    with serving(FakeKubelet(files=kubelet_files(), token=None), None) as fake:
        yield fake


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def make_source(pki: Pki, token_file: Path) -> Iterator[Callable[..., KubeletSource]]:
    made: list[KubeletSource] = []

    def make(base_url: str, **overrides: Any) -> KubeletSource:
        options: dict[str, Any] = {
            "base_url": base_url,
            "node_name": NODE,
            "token_file": token_file,
            "ca_file": pki.ca,
            "timeout_seconds": 2.0,
            "wall_clock_ns": lambda: 1_700_000_000 * 10**9,
        }
        options.update(overrides)
        source = KubeletSource(requests.Session(), **options)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def _expected(node_payload: bytes | None = None) -> Any:
    files = kubelet_files()
    return parse_scrape(
        files["/stats/summary"],
        files["/pods"],
        node=NODE,
        scraped_at_ns=1_700_000_000 * 10**9,
        node_payload=node_payload,
    )


def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the kubelet source logged at INFO and above."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == kubelet_module.__name__ and r.levelno >= logging.INFO
    ]


# --- the good path -----------------------------------------------------------------------------------------


def test_scrape_over_https_with_ca_verification_and_token(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource]
) -> None:
    source = make_source(kubelet.url)
    scrape = source.collect()
    assert scrape == _expected()
    assert len(scrape.containers) == 12
    assert {path for path, _ in kubelet.requests} == {"/stats/summary", "/pods"}
    assert {auth for _, auth in kubelet.requests} == {f"Bearer {TOKEN}"}
    assert source.scrapes == 1


def test_fetch_functions_return_the_raw_bodies(kubelet: FakeKubelet, pki: Pki) -> None:
    with requests.Session() as session:
        session.trust_env = False  # else REQUESTS_CA_BUNDLE, where set, would replace our CA
        session.verify = str(pki.ca)
        assert fetch_summary(session, kubelet.url, token=TOKEN) == kubelet.files["/stats/summary"]
        assert fetch_pods(session, kubelet.url + "/", token=TOKEN) == kubelet.files["/pods"]


def test_node_object_adds_capacity_and_is_cached(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource], pki: Pki
) -> None:
    source = make_source(
        kubelet.url, node_object_url=f"{kubelet.url}/api/v1/nodes/{NODE}", node_object_ca_file=pki.ca
    )
    first = source.collect()
    assert first == _expected(kubelet.files["/api/v1/nodes"])
    assert first.node is not None
    assert first.node.cpu_allocatable_millicores == 7910
    source.collect()
    node_reads = [path for path, _ in kubelet.requests if path.startswith("/api/")]
    assert node_reads == [f"/api/v1/nodes/{NODE}"]  # the second scrape reused the first answer


def test_node_object_failure_does_not_fail_the_scrape(
    kubelet: FakeKubelet,
    make_source: Callable[..., KubeletSource],
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kubelet.forbidden.add(f"/api/v1/nodes/{NODE}")
    source = make_source(
        kubelet.url,
        node_object_url=f"{kubelet.url}/api/v1/nodes/{NODE}",
        node_object_ca_file=pki.ca,
        node_object_refresh_seconds=0.0,
    )
    with caplog.at_level(logging.WARNING, logger=kubelet_module.__name__):
        for _ in range(3):
            scrape = source.collect()
            assert scrape.node is not None
            assert scrape.node.cpu_capacity_millicores is None
    assert source.failures.node_object == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "RBAC get on nodes" in warnings[0]
    kubelet.forbidden.clear()
    with caplog.at_level(logging.INFO, logger=kubelet_module.__name__):
        scrape = source.collect()
    assert scrape.node is not None
    assert scrape.node.cpu_capacity_millicores == 8000
    assert any("readable again" in r.getMessage() for r in caplog.records)


def test_read_only_port_over_http_sends_no_token(
    read_only_kubelet: FakeKubelet, make_source: Callable[..., KubeletSource]
) -> None:
    source = make_source(read_only_kubelet.url)
    assert source.collect() == _expected()
    assert {auth for _, auth in read_only_kubelet.requests} == {None}


def test_insecure_skip_verify_warns_once_and_works(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=kubelet_module.__name__):
        source = make_source(kubelet.url, ca_file=None, insecure_skip_verify=True)
        source.collect()
        source.collect()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "TLS verification" in warnings[0]
    assert "OFF" in warnings[0]


def test_rotated_token_is_read_again(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource], token_file: Path
) -> None:
    source = make_source(kubelet.url)
    source.collect()
    # A projected token is replaced by a new file swapped in by rename.
    replacement = token_file.with_name("token.new")
    replacement.write_text("token-two")
    replacement.replace(token_file)
    kubelet.token = "token-two"
    source.collect()
    assert kubelet.requests[-1] == ("/pods", "Bearer token-two")


# --- failures: a counter and a cause per failure, raised (the agent logs episodes), recovery --------------


def test_wrong_token_is_counted_raised_with_its_cause_and_recovers(
    kubelet: FakeKubelet,
    make_source: Callable[..., KubeletSource],
    token_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kubelet.token = "the-real-token"
    source = make_source(kubelet.url)
    with caplog.at_level(logging.DEBUG, logger=kubelet_module.__name__):
        for _ in range(3):
            with pytest.raises(SourceAuthError, match="401") as raised:
                source.collect()
            assert raised.value.cause == "unauthorized"
        assert source.failures.unauthorized == 3
        message = str(raised.value)
        assert "401 Unauthorized" in message
        assert str(token_file) in message
        assert "rejected" in message
        token_file.write_text("the-real-token")
        assert source.collect() == _expected()
    assert _logged(caplog) == []  # the agent logs the episode, once
    assert source.scrapes == 1


def test_missing_token_file_names_the_setting(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource], tmp_path: Path
) -> None:
    source = make_source(kubelet.url, token_file=tmp_path / "absent")
    with pytest.raises(SourceAuthError, match="KPULSE_COLLECTOR_KUBELET_TOKEN_FILE"):
        source.collect()
    assert {auth for _, auth in kubelet.requests} == {None}


def test_forbidden_names_the_rbac_the_endpoint_needs(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource]
) -> None:
    source = make_source(kubelet.url)
    kubelet.forbidden = {"/stats/summary"}
    with pytest.raises(SourceAuthError, match="get on nodes/stats"):
        source.collect()
    kubelet.forbidden = {"/pods"}
    with pytest.raises(SourceAuthError, match="get on nodes/proxy"):
        source.collect()
    assert source.failures.forbidden == 2


@pytest.mark.parametrize(
    ("mode", "cause", "words"),
    [
        ("500", "http_error", "HTTP 500"),
        ("garbage", "bad_payload", "not a valid /stats/summary document"),
        ("truncated", "truncated", "cut off"),
    ],
)
def test_bad_answers_fail_the_scrape_with_their_cause_and_recover(
    kubelet: FakeKubelet,
    make_source: Callable[..., KubeletSource],
    caplog: pytest.LogCaptureFixture,
    mode: str,
    cause: str,
    words: str,
) -> None:
    source = make_source(kubelet.url)
    kubelet.mode = mode
    with caplog.at_level(logging.INFO, logger=kubelet_module.__name__):
        for _ in range(2):
            with pytest.raises(SourceError, match=words) as raised:
                source.collect()
            assert not isinstance(raised.value, SourceAuthError)
            assert raised.value.cause == cause
        assert getattr(source.failures, cause) == 2
        kubelet.mode = "ok"
        assert source.collect() == _expected()
    assert _logged(caplog) == []


def test_a_hanging_kubelet_times_out_within_the_deadline(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource], caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source(kubelet.url, timeout_seconds=0.5)
    kubelet.mode = "hang"
    started = time.monotonic()
    with (
        caplog.at_level(logging.INFO, logger=kubelet_module.__name__),
        pytest.raises(SourceError, match="no answer"),
    ):
        source.collect()
    assert time.monotonic() - started < 5.0
    assert source.failures.timeout == 1
    kubelet.release.set()
    kubelet.mode = "ok"
    assert source.collect() == _expected()


def test_a_trickling_kubelet_is_cut_at_the_scrape_deadline(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each chunk arrives in time, but the whole answer does not: the source's own clock says when to stop.
    ticks = iter(range(100))
    monkeypatch.setattr(kubelet_module.time, "monotonic", lambda: float(next(ticks)))
    monkeypatch.setattr(kubelet_module, "_CHUNK_BYTES", 1024)
    source = make_source(kubelet.url, timeout_seconds=30.0, monotonic=lambda: 0.0)
    with pytest.raises(SourceError, match="no answer"):
        source.collect()
    assert source.failures.timeout == 1


def test_an_oversized_answer_is_refused(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubelet_module, "MAX_BODY_BYTES", 1000)
    source = make_source(kubelet.url)
    with pytest.raises(SourceError, match="larger than 1000 bytes"):
        source.collect()
    assert source.failures.bad_payload == 1


def test_each_failure_carries_its_own_cause_and_counter(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource]
) -> None:
    source = make_source(kubelet.url)
    causes = []
    for mode in ("500", "500", "garbage", "garbage", "500"):
        kubelet.mode = mode
        with pytest.raises(SourceError) as raised:
            source.collect()
        causes.append(raised.value.cause)
    assert causes == ["http_error", "http_error", "bad_payload", "bad_payload", "http_error"]
    assert source.failures.http_error == 3
    assert source.failures.bad_payload == 2


def test_untrusted_certificate_points_at_the_ca_setting(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource], pki: Pki
) -> None:
    source = make_source(kubelet.url, ca_file=pki.other_ca)
    with pytest.raises(SourceError, match="KPULSE_COLLECTOR_KUBELET_CA_FILE") as raised:
        source.collect()
    assert "INSECURE_SKIP_VERIFY" in str(raised.value)
    assert source.failures.tls == 1


def test_https_to_a_plain_http_port_is_a_tls_failure(
    read_only_kubelet: FakeKubelet, make_source: Callable[..., KubeletSource]
) -> None:
    source = make_source(read_only_kubelet.url.replace("http://", "https://"))
    with pytest.raises(SourceError, match="TLS handshake"):
        source.collect()
    assert source.failures.tls == 1


def test_connection_refused_points_at_url_and_port(make_source: Callable[..., KubeletSource]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = make_source(f"https://127.0.0.1:{port}")
    with pytest.raises(SourceError, match="cannot connect") as raised:
        source.collect()
    assert "KPULSE_COLLECTOR_KUBELET_URL" in str(raised.value)
    assert source.failures.connection == 1


def test_a_kubelet_of_another_node_is_refused(
    kubelet: FakeKubelet, make_source: Callable[..., KubeletSource]
) -> None:
    source = make_source(kubelet.url, node_name="duckboat-02")
    with pytest.raises(SourceError, match="KPULSE_COLLECTOR_NODE_NAME"):
        source.collect()
    assert source.failures.wrong_node == 1


# --- configuration -----------------------------------------------------------------------------------------


def test_base_url_defaults_to_node_ip_on_the_secure_port() -> None:
    assert kubelet_base_url(None, {"NODE_IP": "10.0.0.7"}) == "https://10.0.0.7:10250"
    assert kubelet_base_url(None, {"NODE_IP": "fd00::7"}) == "https://[fd00::7]:10250"
    assert kubelet_base_url("http://10.0.0.7:10255/", {}) == "http://10.0.0.7:10255"
    with pytest.raises(SourceError, match="NODE_IP"):
        kubelet_base_url(None, {})
    with pytest.raises(SourceError, match="KPULSE_COLLECTOR_KUBELET_URL"):
        kubelet_base_url("10.0.0.7:10250", {})


def test_in_cluster_node_url() -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_node_url("n1", environ) == "https://10.96.0.1:443/api/v1/nodes/n1"
    assert in_cluster_node_url("n1", {}) is None


def test_from_settings(kubelet: FakeKubelet, pki: Pki, token_file: Path) -> None:
    settings = CollectorSettings(
        node_name=NODE,
        kubelet_url=kubelet.url,
        kubelet_token_file=token_file,
        kubelet_ca_file=pki.ca,
        interval_seconds=5,
    )
    source = KubeletSource.from_settings(settings, environ={})
    try:
        # Every reading of the capture carries its own time, so the wall clock does not show.
        assert source.collect() == _expected()
    finally:
        source.close()


def test_a_missing_ca_file_is_refused_at_start(tmp_path: Path, token_file: Path) -> None:
    settings = CollectorSettings(
        node_name=NODE,
        kubelet_url="https://127.0.0.1:10250",
        kubelet_token_file=token_file,
        kubelet_ca_file=tmp_path / "absent.pem",
    )
    with pytest.raises(SourceError, match="KPULSE_COLLECTOR_KUBELET_CA_FILE"):
        KubeletSource.from_settings(settings, requests.Session(), environ={})
