"""Requests to the Kubernetes API server as the service account, over HTTPS to the API stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from aggregator.api.kube_client import KubernetesApi, api_server_url
from aggregator.errors import KubernetesApiError
from aggregator.settings import AggregatorSettings
from tests.aggregator.api.kube_standin import CONFIGMAP_PATH, KubeApiStandIn
from tests.pki import TestCa

DATA = {"requestheader-client-ca-file": "PEM", "requestheader-allowed-names": '["front-proxy-client"]'}


@pytest.mark.parametrize(
    ("configured", "environ", "expected"),
    [
        (
            None,
            {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
            "https://10.96.0.1:443",
        ),
        (
            None,
            {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"},
            "https://[fd00::1]:6443",
        ),
        (None, {"KUBERNETES_SERVICE_HOST": "kubernetes.default.svc"}, "https://kubernetes.default.svc:443"),
        ("https://api.example:6443/", {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, "https://api.example:6443"),
        (None, {}, None),
    ],
)
def test_the_api_server_is_the_setting_or_the_in_cluster_service(
    configured: str | None, environ: dict[str, str], expected: str | None
) -> None:
    assert api_server_url(configured, environ) == expected


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[KubeApiStandIn]:
    with KubeApiStandIn(tmp_path, configmap_data=DATA, policy=lambda spec: (True, "")) as api:
        yield api


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _in_pod(standin: KubeApiStandIn, session: requests.Session) -> KubernetesApi:
    settings = AggregatorSettings(metrics_api_service_account_dir=standin.service_account_dir)
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(standin.port)}
    return KubernetesApi.from_settings(settings, session, environ)


def test_in_a_pod_it_reads_as_the_service_account_trusting_the_cluster_ca(
    standin: KubeApiStandIn, session: requests.Session
) -> None:
    kube = _in_pod(standin, session)

    payload = json.loads(kube.get(CONFIGMAP_PATH))

    assert payload["data"] == DATA
    (request,) = standin.requests
    assert request.headers["authorization"] == f"Bearer {standin.token}"
    assert request.headers["accept"] == "application/json"


def test_the_token_is_reread_so_a_rotated_one_is_used(
    standin: KubeApiStandIn, session: requests.Session
) -> None:
    kube = _in_pod(standin, session)
    kube.get(CONFIGMAP_PATH)

    standin.set_token("rotated-token")
    kube.get(CONFIGMAP_PATH)

    assert [r.headers["authorization"] for r in standin.requests][1] == "Bearer rotated-token"


def test_a_refusal_is_an_error_in_the_api_servers_words(
    standin: KubeApiStandIn, session: requests.Session
) -> None:
    kube = _in_pod(standin, session)

    with pytest.raises(
        KubernetesApiError, match="answered HTTP 404: the server could not find the requested"
    ):
        kube.post("/apis/example.com/v1/things", b"{}")
    standin.token = "the server now expects another token"
    with pytest.raises(KubernetesApiError, match=r"GET .* answered HTTP 401: Unauthorized"):
        kube.get(CONFIGMAP_PATH)


def test_an_api_server_with_another_ca_is_not_trusted(
    standin: KubeApiStandIn, session: requests.Session, tmp_path: Path
) -> None:
    kube = KubernetesApi(
        session,
        url=standin.url,
        token_file=standin.service_account_dir / "token",
        ca_file=TestCa("another cluster's CA").write(tmp_path),
    )

    with pytest.raises(KubernetesApiError, match="did not answer"):
        kube.get(CONFIGMAP_PATH)
    assert standin.requests == []


def test_no_token_file_is_an_error_naming_it(standin: KubeApiStandIn, session: requests.Session) -> None:
    kube = _in_pod(standin, session)
    (standin.service_account_dir / "token").unlink()

    with pytest.raises(KubernetesApiError, match="cannot read the service-account token"):
        kube.get(CONFIGMAP_PATH)


def test_outside_a_cluster_without_a_url_there_is_no_api_server(session: requests.Session) -> None:
    with pytest.raises(KubernetesApiError, match="KUBERNETES_SERVICE_HOST is unset"):
        KubernetesApi.from_settings(AggregatorSettings(), session, {})
