"""Setting the metrics API up: trust from settings or the cluster's ConfigMap, certificates, authorizer."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aggregator.api.authz import SubjectAccessReviewer
from aggregator.api.front_proxy_trust import TrustChange
from aggregator.api.metrics_api_setup import prepare_metrics_api
from aggregator.errors import FrontProxyConfigError, KubernetesApiError
from aggregator.settings import AggregatorSettings
from tests.aggregator.api.kube_standin import CONFIGMAP_PATH, KubeApiStandIn, authentication_configmap_data
from tests.pki import TestCa


def _workdir(tmp_path: Path) -> Path:
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir


def test_from_settings_without_authorization_nothing_asks_the_api_server(tmp_path: Path) -> None:
    ca = TestCa("front-proxy-ca")
    settings = AggregatorSettings(
        host="0.0.0.0",
        metrics_api_port=8443,
        metrics_api_requestheader_client_ca_file=ca.write(tmp_path),
        metrics_api_requestheader_allowed_names=["front-proxy-client"],
        metrics_api_requestheader_group_headers=["X-Groups"],
        metrics_api_insecure_skip_authorization=True,
    )

    listener = prepare_metrics_api(settings, _workdir(tmp_path), environ={})

    assert (listener.host, listener.port) == ("0.0.0.0", 8443)
    trust = listener.trust.current()
    assert trust.client_ca_pem == ca.pem
    assert trust.allowed_names == ("front-proxy-client",)
    assert trust.username_headers == ("X-Remote-User",)
    assert trust.group_headers == ("X-Groups",)
    assert listener.trust.source.description == (
        f"KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE={settings.metrics_api_requestheader_client_ca_file}"
    )
    assert listener.authorizer is None
    assert listener.kubernetes_url is None
    assert listener.self_signed is True
    assert listener.serving.cert_file.parent == tmp_path / "work"
    assert stat.S_IMODE(listener.serving.key_file.stat().st_mode) == 0o600


def test_a_configured_serving_certificate_is_used_as_it_is(tmp_path: Path) -> None:
    ca = TestCa("front-proxy-ca")
    serving = TestCa("serving CA").issue(tmp_path, "aggregator", client=False, hosts=["127.0.0.1"])
    settings = AggregatorSettings(
        metrics_api_port=8443,
        metrics_api_host="127.0.0.2",
        metrics_api_cert_file=serving.cert_file,
        metrics_api_key_file=serving.key_file,
        metrics_api_requestheader_client_ca_file=ca.write(tmp_path),
        metrics_api_insecure_skip_authorization=True,
    )

    listener = prepare_metrics_api(settings, _workdir(tmp_path), environ={})

    assert listener.host == "127.0.0.2"
    assert (listener.serving.cert_file, listener.serving.key_file) == (serving.cert_file, serving.key_file)
    assert listener.self_signed is False


def test_in_a_pod_the_trust_comes_from_the_configmap_and_users_are_reviewed(tmp_path: Path) -> None:
    ca = TestCa("front-proxy-ca")
    data = authentication_configmap_data(ca.pem, allowed_names=["front-proxy-client", "aggregator"])
    with KubeApiStandIn(tmp_path, configmap_data=data, policy=lambda spec: (True, "")) as standin:
        settings = AggregatorSettings(
            metrics_api_port=8443, metrics_api_service_account_dir=standin.service_account_dir
        )
        environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(standin.port)}

        listener = prepare_metrics_api(settings, _workdir(tmp_path), environ=environ)

    assert listener.trust.current().allowed_names == ("front-proxy-client", "aggregator")
    assert listener.trust.current().client_ca_pem == ca.pem.strip()
    assert (
        listener.trust.source.description
        == f"ConfigMap kube-system/extension-apiserver-authentication at {standin.url}"
    )
    assert isinstance(listener.authorizer, SubjectAccessReviewer)
    assert listener.kubernetes_url == standin.url
    assert [request.path for request in standin.requests] == [CONFIGMAP_PATH]


def test_an_unreadable_ca_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    settings = AggregatorSettings(
        metrics_api_port=8443,
        metrics_api_requestheader_client_ca_file=tmp_path / "missing.crt",
        metrics_api_insecure_skip_authorization=True,
    )

    with pytest.raises(
        FrontProxyConfigError, match="KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE"
    ):
        prepare_metrics_api(settings, _workdir(tmp_path), environ={})


def test_authorization_needs_an_api_server_even_with_a_ca_file(tmp_path: Path) -> None:
    settings = AggregatorSettings(
        metrics_api_port=8443,
        metrics_api_requestheader_client_ca_file=TestCa("front-proxy-ca").write(tmp_path),
    )

    with pytest.raises(KubernetesApiError, match="KUBERNETES_SERVICE_HOST is unset"):
        prepare_metrics_api(settings, _workdir(tmp_path), environ={})


def test_an_unreachable_api_server_stops_the_setup(tmp_path: Path) -> None:
    standin = KubeApiStandIn(tmp_path, configmap_data={}, policy=lambda spec: (True, ""))
    standin.stop()  # never started: its port refuses connections
    settings = AggregatorSettings(
        metrics_api_port=8443, metrics_api_service_account_dir=standin.service_account_dir
    )
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(standin.port)}

    with pytest.raises(KubernetesApiError, match="did not answer"):
        prepare_metrics_api(settings, _workdir(tmp_path), environ=environ)


def test_the_configmap_is_read_again_on_reload_and_a_failed_read_changes_nothing(tmp_path: Path) -> None:
    first, second = TestCa("front-proxy-ca 1"), TestCa("front-proxy-ca 2")
    data = authentication_configmap_data(first.pem, allowed_names=["front-proxy-client"])
    with KubeApiStandIn(tmp_path, configmap_data=data, policy=lambda spec: (True, "")) as standin:
        settings = AggregatorSettings(
            metrics_api_port=8443, metrics_api_service_account_dir=standin.service_account_dir
        )
        environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(standin.port)}
        live = prepare_metrics_api(settings, _workdir(tmp_path), environ=environ).trust

        assert live.reload() is TrustChange.NONE
        standin.set_configmap_data(
            authentication_configmap_data(
                first.pem, allowed_names=["aggregator"], username_headers=["X-User"]
            )
        )
        assert live.reload() is TrustChange.NAMES
        assert (live.current().allowed_names, live.current().username_headers) == (
            ("aggregator",),
            ("X-User",),
        )
        standin.set_configmap_data(authentication_configmap_data(second.pem, allowed_names=[]))
        assert live.reload() is TrustChange.CA
        rotated = live.current()
        assert (rotated.client_ca_pem, rotated.allowed_names) == (second.pem.strip(), ())

        standin.set_configmap_data(authentication_configmap_data("", allowed_names=[]))
        with pytest.raises(FrontProxyConfigError, match="has no requestheader-client-ca-file"):
            live.reload()
        standin.set_configmap_data(None)
        with pytest.raises(KubernetesApiError, match="HTTP 404"):
            live.reload()
        standin.stop()
        with pytest.raises(KubernetesApiError, match="did not answer"):
            live.reload()

    assert live.current() is rotated
    # At start-up, then five reloads that reached it (the last found nothing listening).
    assert [request.path for request in standin.requests] == [CONFIGMAP_PATH] * 6
    assert {request.headers["authorization"] for request in standin.requests} == {f"Bearer {standin.token}"}
