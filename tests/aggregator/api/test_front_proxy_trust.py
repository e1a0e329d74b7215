"""The front-proxy trust read again while uvicorn serves: real TLS handshakes against CAs that rotate.

Each test serves a small app under uvicorn configured by ``metrics_api_config`` (the listening context from
``LiveTrust``, the TLS-scope protocol), as ``python -m aggregator`` serves the metrics API, with the trust
read from a CA file (``KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE``) that the test replaces
the way a rotation does: first a bundle of the old and the new CA, then the new CA alone. Clients present
certificates from either CA; a refused one fails the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi import FastAPI, Request

from aggregator.api.front_proxy_trust import LiveTrust, TrustChange, keep_current, reload_once
from aggregator.api.metrics_api_setup import metrics_api_config, prepare_metrics_api
from aggregator.metrics import AggregatorMetrics
from aggregator.settings import AggregatorSettings
from tests.aggregator.servers import serve_config
from tests.pki import Issued, TestCa, publish_bundle

DEADLINE_SECONDS = 10.0
CA_FILE_VARIABLE = "KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE"


def _whoami() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    def whoami(request: Request) -> dict[str, Any]:
        return {"name": request.scope["extensions"]["tls"]["client_cert_name"]}

    return app


@dataclass
class Rig:
    ca_file: Path
    live: LiveTrust
    port: int
    serving_cert: Path
    metrics: AggregatorMetrics

    def answers(self, cert: Issued) -> bool:
        """``True`` when a request with ``cert`` is served, ``False`` when the handshake refuses it."""
        try:
            response = requests.get(
                f"https://127.0.0.1:{self.port}/",
                cert=cert.pair,
                verify=str(self.serving_cert),
                timeout=DEADLINE_SECONDS,
            )
        except requests.exceptions.ConnectionError:  # the TLS alert included (SSLError)
            return False
        assert response.status_code == 200, response.text
        return True

    def reloads(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "kpulse_aggregator_metrics_api_trust_reloads_total", {"outcome": outcome}
        )
        return value or 0.0


@contextlib.contextmanager
def serving(tmp_path: Path, *cas: TestCa) -> Iterator[Rig]:
    ca_file = tmp_path / "front-proxy-ca.crt"
    publish_bundle(ca_file, *cas)
    workdir = tmp_path / "work"
    workdir.mkdir()
    settings = AggregatorSettings(
        metrics_api_port=8443,
        metrics_api_requestheader_client_ca_file=ca_file,
        metrics_api_insecure_skip_authorization=True,
    )
    listener = prepare_metrics_api(settings, workdir, environ={})
    config = metrics_api_config(_whoami(), listener, access_log=False)  # type: ignore[arg-type]
    with serve_config(config) as (port, _):
        yield Rig(ca_file, listener.trust, port, listener.serving.cert_file, AggregatorMetrics())


@pytest.fixture
def old_ca() -> TestCa:
    return TestCa("front-proxy-ca 1")


@pytest.fixture
def new_ca() -> TestCa:
    return TestCa("front-proxy-ca 2")


def test_new_handshakes_verify_against_the_ca_set_read_last(
    tmp_path: Path, old_ca: TestCa, new_ca: TestCa
) -> None:
    old_client = old_ca.issue(tmp_path, "front-proxy-client", client=True)
    new_client = new_ca.issue(tmp_path, "front-proxy-client", client=True)
    with serving(tmp_path, old_ca) as rig:
        assert (rig.answers(old_client), rig.answers(new_client)) == (True, False)

        publish_bundle(rig.ca_file, old_ca, new_ca)
        assert rig.live.reload() is TrustChange.CA
        assert (rig.answers(old_client), rig.answers(new_client)) == (True, True)

        publish_bundle(rig.ca_file, new_ca)
        assert rig.live.reload() is TrustChange.CA
        assert (rig.answers(old_client), rig.answers(new_client)) == (False, True)


def _exchange(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None) -> tuple[bytes, Any, bool]:
    """One request on a new connection, offering to resume ``session``: answer, session, whether resumed."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_SECONDS) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        # Read to the end: TLS 1.3 session tickets arrive after the handshake.
        while chunk := tls.recv(65536):
            answer += chunk
        return answer, tls.session, tls.session_reused


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_client_cannot_resume_a_session_to_skip_verification_against_the_new_ca_set(
    tmp_path: Path, old_ca: TestCa, new_ca: TestCa, version: ssl.TLSVersion
) -> None:
    old_client = old_ca.issue(tmp_path, "front-proxy-client", client=True)
    with serving(tmp_path, old_ca) as rig:
        context = ssl.create_default_context(cafile=str(rig.serving_cert))
        context.minimum_version = context.maximum_version = version
        context.load_cert_chain(old_client.cert_file, old_client.key_file)
        answer, session, _ = _exchange(rig.port, context, None)
        assert answer.startswith(b"HTTP/1.1 200")
        # While the CA set stands, TLS 1.2 sessions are resumed (by ID); TLS 1.3 gets no tickets.
        answer, session, resumed = _exchange(rig.port, context, session)
        assert answer.startswith(b"HTTP/1.1 200")
        assert resumed is (version is ssl.TLSVersion.TLSv1_2)

        publish_bundle(rig.ca_file, new_ca)
        assert rig.live.reload() is TrustChange.CA
        try:
            again, _, _ = _exchange(rig.port, context, session)
        except OSError:  # the server's alert (ssl.SSLError), or the connection reset after it
            again = b""

    assert not again.startswith(b"HTTP/1.1 200"), "a session from before the rotation was resumed"


def test_a_failed_reload_keeps_the_last_good_trust_logs_one_line_and_counts(
    tmp_path: Path, old_ca: TestCa, caplog: pytest.LogCaptureFixture
) -> None:
    client = old_ca.issue(tmp_path, "front-proxy-client", client=True)
    half_written = old_ca.pem[: len(old_ca.pem) // 2] + "\n-----END CERTIFICATE-----\n"
    with serving(tmp_path, old_ca) as rig:
        in_force = rig.live.current()
        for content, cause in [
            (half_written, "is not PEM"),
            ("", "is not PEM"),
            (None, "cannot read"),
        ]:
            if content is None:
                rig.ca_file.unlink()
            else:
                rig.ca_file.write_text(content)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="aggregator.api.front_proxy_trust"):
                assert reload_once(rig.live, rig.metrics, period_seconds=60) is None

            (line,) = [
                record for record in caplog.records if record.name == "aggregator.api.front_proxy_trust"
            ]
            assert line.levelno == logging.WARNING
            message = line.getMessage()
            assert f"from {CA_FILE_VARIABLE}={rig.ca_file}:" in message
            assert cause in message
            assert "the last good trust stays in force, next try in 60 s" in message
            assert rig.live.current() is in_force
            assert rig.answers(client)

        assert rig.reloads("failed") == 3
        assert rig.reloads("changed") == 0


def test_a_reload_logs_a_change_once_and_an_unchanged_source_not_at_all(
    tmp_path: Path, old_ca: TestCa, new_ca: TestCa, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(tmp_path, old_ca) as rig, caplog.at_level(logging.INFO, "aggregator.api.front_proxy_trust"):
        assert reload_once(rig.live, rig.metrics, period_seconds=60) is TrustChange.NONE
        assert caplog.records == []

        publish_bundle(rig.ca_file, new_ca, old_ca)
        assert reload_once(rig.live, rig.metrics, period_seconds=60) is TrustChange.CA
        # The same two CAs in another order are the same CA set.
        publish_bundle(rig.ca_file, old_ca, new_ca)
        assert reload_once(rig.live, rig.metrics, period_seconds=60) is TrustChange.NONE

    (line,) = caplog.records
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith(
        f"front-proxy trust from {CA_FILE_VARIABLE}={rig.ca_file} changed (new CA set, new TLS handshakes "
        "verify against it): CA ['CN=front-proxy-ca 2', 'CN=front-proxy-ca 1']"
    )
    assert (rig.reloads("unchanged"), rig.reloads("changed"), rig.reloads("failed")) == (2, 1, 0)


def test_keep_current_reloads_every_period_and_calls_back_after_a_new_ca_set(
    tmp_path: Path, old_ca: TestCa, new_ca: TestCa
) -> None:
    calls: list[str] = []
    with serving(tmp_path, old_ca) as rig:

        async def scenario() -> None:
            async def until(predicate: Any, what: str) -> None:
                deadline = time.monotonic() + DEADLINE_SECONDS
                while not predicate():
                    assert time.monotonic() < deadline, what
                    await asyncio.sleep(0.01)  # polling within the loop keep_current runs in

            reloading = asyncio.create_task(
                keep_current(
                    rig.live,
                    period_seconds=0.05,
                    metrics=rig.metrics,
                    on_ca_change=lambda: calls.append(rig.live.current().client_ca_pem),
                )
            )
            await until(lambda: rig.reloads("unchanged") >= 2, "no periodic reload")
            assert calls == []
            publish_bundle(rig.ca_file, new_ca)
            await until(lambda: calls, "no call back after the new CA set")
            reloading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reloading

        asyncio.run(scenario())

    assert calls == [new_ca.pem]
    assert rig.reloads("changed") == 1
