"""``python -m aggregator`` with the metrics-API listener, as a real process: what the overlay deploys.

In the cluster setup the process finds the API server through ``KUBERNETES_SERVICE_HOST``/``_PORT`` and a
service-account directory, as in a pod; the API server is the HTTPS stand-in of
tests/aggregator/api/kube_standin.py (no kube-apiserver can run here), which publishes the front-proxy CA
in its ConfigMap and answers SubjectAccessReviews. Front-proxy client certificates, a certificate from
another CA and one with the wrong name are made here. In the file setup the trust and the serving
certificate come from settings and authorization is (unsafely) off. In both, the trust is read again while
the process serves: the tests rotate the CA (a bundle of both, then the new one alone) and poll until new
handshakes follow it; a malformed update or an API server that does not answer changes nothing. Start-up
failures exit with a message.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.aggregator.api.batches import gzip_body, make_batch
from tests.aggregator.api.kube_standin import CONFIGMAP_PATH, KubeApiStandIn, authentication_configmap_data
from tests.helpers import free_tcp_port, stop_process, wait_until
from tests.pki import Issued, TestCa, publish_bundle

REPO = Path(__file__).resolve().parents[2]
GV = "/apis/metrics.k8s.io/v1beta1"
POD = f"{GV}/namespaces/shop/pods/web-0"
"""A pod of tests.aggregator.api.batches.make_batch, with one container (app0)."""
DEADLINE_SECONDS = 30.0
SECOND = 1_000_000_000


def _env(**variables: str) -> dict[str, str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KPULSE_", "KUBERNETES_SERVICE_"))
    }
    return {**inherited, **variables}


@dataclass
class Aggregator:
    process: subprocess.Popen[str]
    url: str
    metrics_api: str
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """Starts ``python -m aggregator`` with the given variables; every process is stopped at the end."""
    started: list[Aggregator] = []

    def run(**variables: str) -> Aggregator:
        port, metrics_port = free_tcp_port(), free_tcp_port()
        log_file = tmp_path / f"aggregator-{len(started)}.log"
        with log_file.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "aggregator"],
                cwd=REPO,
                env=_env(
                    KPULSE_AGGREGATOR_PORT=str(port),
                    KPULSE_AGGREGATOR_METRICS_API_PORT=str(metrics_port),
                    **variables,
                ),
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
        aggregator = Aggregator(
            process, f"http://127.0.0.1:{port}", f"https://127.0.0.1:{metrics_port}", log_file
        )
        started.append(aggregator)
        return aggregator

    yield run
    for aggregator in started:
        stop_process(aggregator.process, DEADLINE_SECONDS)  # type: ignore[arg-type]


def _serving(aggregator: Aggregator) -> bool:
    """``True`` once both ports answer their probes; fails at once when the process has exited."""
    assert aggregator.process.poll() is None, f"the aggregator exited:\n{aggregator.log()}"
    try:
        main = requests.get(f"{aggregator.url}/healthz", timeout=1).status_code == 200
        # The probe needs no client certificate; the serving certificate is checked separately.
        metrics = requests.get(f"{aggregator.metrics_api}/livez", timeout=1, verify=False).status_code == 200
    except requests.RequestException:
        return False
    return main and metrics


def _wait_serving(aggregator: Aggregator) -> None:
    wait_until(lambda: _serving(aggregator), DEADLINE_SECONDS, lambda: f"not serving:\n{aggregator.log()}")


def _ingest_two_scrapes(aggregator: Aggregator, node: str) -> None:
    """Two scrapes of ``node`` in the recent past, 10 s apart: rates exist from the second one."""
    bucket = time.time_ns() // (10 * SECOND) * (10 * SECOND)
    for scraped_at in (bucket - 20 * SECOND + SECOND // 2, bucket - 10 * SECOND + SECOND // 2):
        response = requests.post(
            f"{aggregator.url}/api/v1/ingest",
            data=gzip_body(make_batch(node=node, scraped_at_ns=scraped_at)),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 202, response.text


@dataclass
class Cluster:
    standin: KubeApiStandIn
    front_proxy: Issued
    wrong_name: Issued
    other_ca: Issued

    def env(self) -> dict[str, str]:
        return _pod_env(self.standin)


def _pod_env(standin: KubeApiStandIn) -> dict[str, str]:
    """What a pod has: the API server's Service in the environment, the service account mounted."""
    return {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(standin.port),
        "KPULSE_AGGREGATOR_METRICS_API_SERVICE_ACCOUNT_DIR": str(standin.service_account_dir),
    }


def rbac(spec: dict[str, Any]) -> tuple[bool, str]:
    """alice may read metrics.k8s.io; nobody else anything."""
    allowed = spec["user"] == "alice" and spec.get("resourceAttributes", {}).get("group") == "metrics.k8s.io"
    return allowed, ""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    front_proxy_ca = TestCa("front-proxy-ca")
    data = authentication_configmap_data(front_proxy_ca.pem, allowed_names=["front-proxy-client"])
    with KubeApiStandIn(tmp_path, configmap_data=data, policy=rbac) as standin:
        yield Cluster(
            standin=standin,
            front_proxy=front_proxy_ca.issue(tmp_path, "front-proxy-client", client=True),
            wrong_name=front_proxy_ca.issue(tmp_path, "someone", client=True),
            other_ca=TestCa("other CA").issue(tmp_path, "front-proxy-client", client=True),
        )


def _get(
    aggregator: Aggregator, path: str, cert: Issued | None, user: str | None = "alice"
) -> requests.Response:
    return requests.get(
        f"{aggregator.metrics_api}{path}",
        cert=cert.pair if cert else None,
        headers={"X-Remote-User": user} if user else None,
        verify=False,  # the self-signed serving certificate, as the APIService's insecureSkipTLSVerify
        timeout=10,
    )


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_in_a_cluster_it_serves_kubectl_top_to_the_front_proxy_for_authorized_users_only(
    start: Any, cluster: Cluster, influx_url: str, influx_db: str
) -> None:
    aggregator = start(
        KPULSE_AGGREGATOR_INFLUX_URL=influx_url, KPULSE_AGGREGATOR_INFLUX_DATABASE=influx_db, **cluster.env()
    )
    _wait_serving(aggregator)
    _ingest_two_scrapes(aggregator, "node-mapi")

    # The front-proxy trust was read from the ConfigMap as the service account.
    (read,) = cluster.standin.recorded(CONFIGMAP_PATH)
    assert read.headers["authorization"] == f"Bearer {cluster.standin.token}"
    # The serving certificate was made at start-up, for this host.
    served = x509.load_pem_x509_certificate(
        ssl.get_server_certificate(("127.0.0.1", int(aggregator.metrics_api.rsplit(":", 1)[1]))).encode()
    )
    assert served.issuer == served.subject
    assert "kpulse-aggregator-metrics-api@" in served.subject.rfc4514_string()

    def pod_metrics() -> dict[str, Any] | None:
        response = _get(aggregator, POD, cluster.front_proxy)
        return response.json() if response.status_code == 200 else None

    body = wait_until(pod_metrics, DEADLINE_SECONDS, "the pod never appeared in the metrics API")
    plain = requests.get(f"{aggregator.url}{POD}", timeout=10).json()
    for document in (body, plain):
        del document["metadata"]["creationTimestamp"]  # "now", a second apart at most
    assert body == plain
    # make_batch's container counter grows a tenth of a CPU-second per second.
    assert [(c["name"], c["usage"]["cpu"]) for c in body["containers"]] == [("app0", "100m")]
    assert cluster.standin.reviews()[0]["spec"] == {
        "user": "alice",
        "groups": ["system:authenticated"],
        "resourceAttributes": {
            "namespace": "shop",
            "verb": "get",
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "resource": "pods",
            "name": "web-0",
        },
    }
    assert (
        cluster.standin.recorded("/apis/authorization.k8s.io/v1/subjectaccessreviews")[0].headers[
            "authorization"
        ]
        == f"Bearer {cluster.standin.token}"
    )

    assert _get(aggregator, f"{GV}/nodes", None).status_code == 401
    assert _get(aggregator, f"{GV}/nodes", cluster.wrong_name).status_code == 401
    assert _get(aggregator, f"{GV}/nodes", cluster.front_proxy, user=None).status_code == 401
    with pytest.raises(requests.exceptions.ConnectionError):
        _get(aggregator, f"{GV}/nodes", cluster.other_ca)
    denied = _get(aggregator, f"{GV}/nodes", cluster.front_proxy, user="mallory")
    assert denied.status_code == 403
    assert denied.json()["message"].startswith(
        'nodes.metrics.k8s.io is forbidden: User "mallory" cannot list'
    )

    cluster.standin.stop()
    unavailable = _get(aggregator, f"{GV}/pods", cluster.front_proxy, user="alice")
    assert unavailable.status_code == 503
    assert unavailable.json()["reason"] == "ServiceUnavailable"

    aggregator.process.send_signal(signal.SIGTERM)
    assert aggregator.process.wait(DEADLINE_SECONDS) == 0
    log = aggregator.log()
    assert "front proxy trusted from ConfigMap kube-system/extension-apiserver-authentication" in log
    assert "cannot authorize user 'alice' for GET /apis/metrics.k8s.io/v1beta1/pods" in log
    assert "Application shutdown complete" in log
    assert log.count("Finished server process") == 2
    assert all(line[:4].isdigit() for line in log.splitlines()), "every log event is one line"


@pytest.mark.integration
def test_with_files_it_serves_the_configured_certificate_and_can_skip_authorization(
    start: Any, tmp_path: Path, influx_url: str, influx_db: str
) -> None:
    front_proxy_ca, server_ca = TestCa("front-proxy-ca"), TestCa("serving CA")
    serving = server_ca.issue(tmp_path, "aggregator", client=False, hosts=["127.0.0.1"])
    aggregator = start(
        KPULSE_AGGREGATOR_INFLUX_URL=influx_url,
        KPULSE_AGGREGATOR_INFLUX_DATABASE=influx_db,
        KPULSE_AGGREGATOR_METRICS_API_CERT_FILE=str(serving.cert_file),
        KPULSE_AGGREGATOR_METRICS_API_KEY_FILE=str(serving.key_file),
        KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE=str(front_proxy_ca.write(tmp_path)),
        KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_ALLOWED_NAMES="aggregator-proxy,front-proxy-client",
        KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_USERNAME_HEADERS="X-Proxy-User",
        KPULSE_AGGREGATOR_METRICS_API_INSECURE_SKIP_AUTHORIZATION="true",
    )
    client = front_proxy_ca.issue(tmp_path, "aggregator-proxy", client=True)
    server_ca_file = server_ca.write(tmp_path)

    def answers() -> requests.Response | None:
        assert aggregator.process.poll() is None, aggregator.log()
        try:
            # Verified against the serving CA: the configured certificate, not a self-signed one.
            return requests.get(
                f"{aggregator.metrics_api}{GV}/nodes",
                cert=client.pair,
                headers={"X-Proxy-User": "anyone"},
                verify=str(server_ca_file),
                timeout=2,
            )
        except requests.RequestException:
            return None

    response = wait_until(answers, DEADLINE_SECONDS, lambda: f"no answer:\n{aggregator.log()}")
    assert response.status_code == 200
    assert response.json()["kind"] == "NodeMetricsList"
    unnamed = requests.get(
        f"{aggregator.metrics_api}{GV}/nodes",
        cert=client.pair,
        headers={"X-Remote-User": "anyone"},  # not the configured header
        verify=str(server_ca_file),
        timeout=10,
    )
    assert unnamed.status_code == 401
    assert stop_process(aggregator.process, DEADLINE_SECONDS) == 0  # type: ignore[arg-type]
    assert "KPULSE_AGGREGATOR_METRICS_API_INSECURE_SKIP_AUTHORIZATION is set" in aggregator.log()


def _handshakes(aggregator: Aggregator, cert: Issued) -> bool:
    """``True`` when the metrics port accepts ``cert`` in the TLS handshake (a probe: no authentication)."""
    assert aggregator.process.poll() is None, f"the aggregator exited:\n{aggregator.log()}"
    try:
        requests.get(f"{aggregator.metrics_api}/livez", cert=cert.pair, verify=False, timeout=10)
    except requests.exceptions.ConnectionError:  # the TLS alert included (SSLError)
        return False
    return True


def _trust_reloads(aggregator: Aggregator, outcome: str) -> float:
    """``kpulse_aggregator_metrics_api_trust_reloads_total{outcome=...}`` on the main port's /metrics."""
    text = requests.get(f"{aggregator.url}/metrics", timeout=10).text
    return next(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "kpulse_aggregator_metrics_api_trust_reloads_total"
        and sample.labels == {"outcome": outcome}
    )


def _wait_for_failed_reloads(aggregator: Aggregator, more_than: float) -> None:
    wait_until(
        lambda: _trust_reloads(aggregator, "failed") > more_than,
        DEADLINE_SECONDS,
        lambda: f"no failed reload counted:\n{aggregator.log()}",
    )


def _half_written(ca: TestCa) -> str:
    return ca.pem[: len(ca.pem) // 2] + "\n-----END CERTIFICATE-----\n"


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_front_proxy_ca_rotated_in_the_configmap_is_used_without_a_restart(
    start: Any, tmp_path: Path, influx_url: str, influx_db: str
) -> None:
    first, second = TestCa("front-proxy-ca 1"), TestCa("front-proxy-ca 2")
    old = first.issue(tmp_path, "front-proxy-client", client=True)
    new = second.issue(tmp_path, "front-proxy-client", client=True)
    renamed = second.issue(tmp_path, "front-proxy-2", client=True)
    data = authentication_configmap_data(first.pem, allowed_names=["front-proxy-client"])
    with KubeApiStandIn(tmp_path, configmap_data=data, policy=rbac) as standin:
        aggregator = start(
            KPULSE_AGGREGATOR_INFLUX_URL=influx_url,
            KPULSE_AGGREGATOR_INFLUX_DATABASE=influx_db,
            KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_RELOAD_SECONDS="0.2",
            **_pod_env(standin),
        )
        _wait_serving(aggregator)
        assert (_handshakes(aggregator, old), _handshakes(aggregator, new)) == (True, False)

        # A rotation's first step: the API server publishes the old and the new CA.
        standin.set_configmap_data(
            authentication_configmap_data(first.pem + second.pem, allowed_names=["front-proxy-client"])
        )
        wait_until(lambda: _handshakes(aggregator, new), DEADLINE_SECONDS, aggregator.log)
        assert _handshakes(aggregator, old)
        assert _get(aggregator, f"{GV}/nodes", new).status_code == 200

        with requests.Session() as kept_alive:

            def through_kept_connection() -> int | None:
                try:
                    return kept_alive.get(
                        f"{aggregator.metrics_api}{GV}/nodes",
                        cert=old.pair,
                        headers={"X-Remote-User": "alice"},
                        verify=False,
                        timeout=10,
                    ).status_code
                except requests.exceptions.ConnectionError:
                    return None

            assert through_kept_connection() == 200
            # The second step: the new CA alone, and the front proxy's certificate has a new name.
            standin.set_configmap_data(
                authentication_configmap_data(second.pem, allowed_names=["front-proxy-2"])
            )
            wait_until(
                lambda: _get(aggregator, f"{GV}/nodes", renamed).status_code == 200,
                DEADLINE_SECONDS,
                aggregator.log,
            )
            assert not _handshakes(aggregator, old)
            assert _get(aggregator, f"{GV}/nodes", new).status_code == 401  # no longer an allowed name
            # A connection the old CA verified is closed, and its client cannot connect again. Polled
            # faster than uvicorn's keep-alive timeout, so only the reload can end it.
            wait_until(
                lambda: through_kept_connection() is None,
                DEADLINE_SECONDS,
                lambda: f"the connection the old CA verified still serves:\n{aggregator.log()}",
            )

        # A malformed update, then an API server that does not answer: the last good trust stays.
        failed = _trust_reloads(aggregator, "failed")
        standin.set_configmap_data(authentication_configmap_data(_half_written(first), allowed_names=[]))
        _wait_for_failed_reloads(aggregator, failed)
        assert (_handshakes(aggregator, renamed), _handshakes(aggregator, old)) == (True, False)
        assert _get(aggregator, f"{GV}/nodes", new).status_code == 401
        failed = _trust_reloads(aggregator, "failed")
        standin.stop()
        _wait_for_failed_reloads(aggregator, failed)
        assert (_handshakes(aggregator, renamed), _handshakes(aggregator, old)) == (True, False)
        assert _trust_reloads(aggregator, "changed") == 2

        assert stop_process(aggregator.process, DEADLINE_SECONDS) == 0  # type: ignore[arg-type]
    log = aggregator.log()
    source = f"ConfigMap kube-system/extension-apiserver-authentication at {standin.url}"
    assert log.count(f"front-proxy trust from {source} changed (new CA set") == 2
    assert "allowed names ['front-proxy-2']" in log
    assert re.search(r"closed [1-9]\d* metrics API connection\(s\) verified against the previous", log)
    assert f"cannot reload the front-proxy trust from {source}: the requestheader client CA from " in log
    assert "is not PEM" in log
    assert f"cannot reload the front-proxy trust from {source}: GET {CONFIGMAP_PATH}: the API server" in log
    assert "Traceback" not in log
    assert all(line[:4].isdigit() for line in log.splitlines()), "every log event is one line"


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_rotated_ca_file_is_used_without_a_restart_and_a_malformed_one_changes_nothing(
    start: Any, tmp_path: Path, influx_url: str, influx_db: str
) -> None:
    first, second = TestCa("front-proxy-ca 1"), TestCa("front-proxy-ca 2")
    old = first.issue(tmp_path, "front-proxy-client", client=True)
    new = second.issue(tmp_path, "front-proxy-client", client=True)
    ca_file = tmp_path / "front-proxy-ca.crt"
    publish_bundle(ca_file, first)
    aggregator = start(
        KPULSE_AGGREGATOR_INFLUX_URL=influx_url,
        KPULSE_AGGREGATOR_INFLUX_DATABASE=influx_db,
        KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE=str(ca_file),
        KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_ALLOWED_NAMES="front-proxy-client",
        KPULSE_AGGREGATOR_METRICS_API_INSECURE_SKIP_AUTHORIZATION="true",
        KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_RELOAD_SECONDS="0.2",
    )
    _wait_serving(aggregator)
    assert (_handshakes(aggregator, old), _handshakes(aggregator, new)) == (True, False)

    publish_bundle(ca_file, second)
    wait_until(lambda: _handshakes(aggregator, new), DEADLINE_SECONDS, aggregator.log)
    assert not _handshakes(aggregator, old)
    assert _get(aggregator, f"{GV}/nodes", new).status_code == 200

    ca_file.write_text(_half_written(second))
    _wait_for_failed_reloads(aggregator, 0)
    assert (_handshakes(aggregator, new), _handshakes(aggregator, old)) == (True, False)
    assert _get(aggregator, f"{GV}/nodes", new).status_code == 200

    assert stop_process(aggregator.process, DEADLINE_SECONDS) == 0  # type: ignore[arg-type]
    log = aggregator.log()
    source = f"KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE={ca_file}"
    assert f"front proxy trusted from {source} (read again every 0.2 s)" in log
    assert log.count(f"front-proxy trust from {source} changed (new CA set") == 1
    assert (
        f"cannot reload the front-proxy trust from {source}: the requestheader client CA from "
        "KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE is not PEM" in log
    )
    assert "Traceback" not in log


def _run(**variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator"],
        cwd=REPO,
        env=_env(KPULSE_AGGREGATOR_INFLUX_URL="http://127.0.0.1:9", **variables),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_outside_a_cluster_without_a_ca_file_it_refuses_to_start(tmp_path: Path) -> None:
    result = _run(KPULSE_AGGREGATOR_METRICS_API_PORT=str(free_tcp_port()))

    assert result.returncode == 1, result.stderr
    assert "the metrics API (KPULSE_AGGREGATOR_METRICS_API_PORT) cannot start" in result.stderr
    assert "KUBERNETES_SERVICE_HOST is unset" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_api_server_without_a_front_proxy_ca_stops_it_at_start(tmp_path: Path) -> None:
    data = authentication_configmap_data("", allowed_names=[])
    with KubeApiStandIn(tmp_path, configmap_data=data, policy=rbac) as standin:
        result = _run(
            KPULSE_AGGREGATOR_METRICS_API_PORT=str(free_tcp_port()),
            KUBERNETES_SERVICE_HOST="127.0.0.1",
            KUBERNETES_SERVICE_PORT=str(standin.port),
            KPULSE_AGGREGATOR_METRICS_API_SERVICE_ACCOUNT_DIR=str(standin.service_account_dir),
        )

    assert result.returncode == 1, result.stderr
    assert "has no requestheader-client-ca-file" in result.stderr


def test_a_serving_certificate_that_is_not_one_stops_it_at_start(tmp_path: Path) -> None:
    not_pem = tmp_path / "tls.crt"
    not_pem.write_text("not a certificate")
    result = _run(
        KPULSE_AGGREGATOR_METRICS_API_PORT=str(free_tcp_port()),
        KPULSE_AGGREGATOR_METRICS_API_CERT_FILE=str(not_pem),
        KPULSE_AGGREGATOR_METRICS_API_KEY_FILE=str(not_pem),
        KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE=str(TestCa("ca").write(tmp_path)),
        KPULSE_AGGREGATOR_METRICS_API_INSECURE_SKIP_AUTHORIZATION="true",
    )

    assert result.returncode == 1, result.stderr
    assert "cannot load the TLS certificate or key" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"KPULSE_AGGREGATOR_PORT": "8443", "KPULSE_AGGREGATOR_METRICS_API_PORT": "8443"},
            "KPULSE_AGGREGATOR_METRICS_API_PORT must differ from KPULSE_AGGREGATOR_PORT",
        ),
        (
            {
                "KPULSE_AGGREGATOR_METRICS_API_PORT": "8443",
                "KPULSE_AGGREGATOR_METRICS_API_CERT_FILE": "/x.crt",
            },
            "KPULSE_AGGREGATOR_METRICS_API_KEY_FILE",
        ),
        (
            {"KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_ALLOWED_NAMES": '["unclosed'},
            "invalid setting KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_ALLOWED_NAMES: Value error, not a",
        ),
    ],
)
def test_inconsistent_metrics_api_settings_exit_2_naming_the_variables(
    variables: dict[str, str], expected: str
) -> None:
    result = _run(**variables)

    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
