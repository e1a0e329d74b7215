"""The metrics API behind an APIService, in process: real TLS, real client certificates, real reviews.

The metrics-API app is served by uvicorn over HTTPS with the same configuration ``python -m aggregator``
uses (client certificates optional and verified against the front-proxy CA, the TLS-scope protocol), next
to the main app fed with a simulation; users are authorized by SubjectAccessReviews sent to the Kubernetes
API stand-in. The main app requires a query token, which the metrics API must not ask for: the API server
never forwards one.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from aggregator.api.app import create_metrics_api_app
from aggregator.api.authz import Authorizer, SubjectAccessReviewer
from aggregator.api.front_proxy import RequestHeaderTrust
from aggregator.api.front_proxy_trust import LiveTrust, TrustSource
from aggregator.api.kube_client import KubernetesApi
from aggregator.api.metrics_api_setup import MetricsApiListener, metrics_api_config
from aggregator.api.serving_cert import default_hosts, write_self_signed
from aggregator.api.state import AggregatorState
from tests.aggregator.api.kube_standin import KubeApiStandIn
from tests.aggregator.query.apps import RunningAggregator, running_aggregator
from tests.aggregator.query.simulation import SimContainer, Simulation
from tests.aggregator.servers import serve_config
from tests.pki import Issued, TestCa

GV = "/apis/metrics.k8s.io/v1beta1"
QUERY_TOKEN = "main-port-query-token"
REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def rbac(spec: dict[str, Any]) -> tuple[bool, str]:
    """alice may read metrics.k8s.io and discovery; nobody else anything (as RBAC would answer)."""
    if spec["user"] != "alice":
        return False, ""
    if "nonResourceAttributes" in spec:
        return True, "RBAC: allowed by ClusterRoleBinding system:discovery"
    attributes = spec["resourceAttributes"]
    allowed = attributes.get("group") == "metrics.k8s.io" and attributes["verb"] in {"get", "list", "watch"}
    return allowed, "RBAC: allowed by ClusterRoleBinding metrics-readers" if allowed else ""


@dataclass
class Served:
    url: str
    serving_cert: Path


@contextlib.contextmanager
def serve_metrics_api(
    state: AggregatorState, trust: RequestHeaderTrust, authorizer: Authorizer | None, workdir: Path
) -> Iterator[Served]:
    """The metrics-API app under uvicorn, configured as ``python -m aggregator`` configures it."""
    serving = write_self_signed(workdir, default_hosts(), datetime.datetime.now(datetime.UTC))
    live = LiveTrust(TrustSource("the test's trust", lambda: trust), trust, serving)
    listener = MetricsApiListener(
        host="127.0.0.1",
        port=1,  # unused: uvicorn serves the socket below
        serving=serving,
        self_signed=True,
        trust=live,
        authorizer=authorizer,
        kubernetes_url=None,
    )
    app = create_metrics_api_app(state, trust=live.current, authorizer=authorizer)
    with serve_config(metrics_api_config(app, listener, access_log=False)) as (port, _):
        yield Served(f"https://127.0.0.1:{port}", serving.cert_file)


@dataclass
class Setup:
    served: Served
    trust: RequestHeaderTrust
    main: RunningAggregator
    standin: KubeApiStandIn
    client: Issued
    other_name: Issued
    other_ca: Issued
    session: requests.Session

    def get(
        self, path: str, *, cert: Issued | None = None, headers: dict[str, str] | None = None
    ) -> requests.Response:
        """GET on the metrics API, trusting its (self-signed) certificate and nothing else."""
        return self.session.get(
            f"{self.served.url}{path}",
            cert=cert.pair if cert is not None else None,
            headers=headers,
            verify=str(self.served.serving_cert),
            timeout=30,
        )

    def proxied(self, path: str, user: str, group: str | None = None) -> requests.Response:
        """GET as the API server's front proxy does it for ``user``."""
        headers = {"X-Remote-User": user}
        if group is not None:
            headers["X-Remote-Group"] = group
        return self.get(path, cert=self.client, headers=headers)

    def counted(self, outcome: str) -> float:
        """``kpulse_aggregator_metrics_api_requests_total{outcome=...}`` of the shared app state."""
        registry = self.main.app.state.aggregator.metrics.registry
        value = registry.get_sample_value(
            "kpulse_aggregator_metrics_api_requests_total", {"outcome": outcome}
        )
        return value or 0.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("metrics-api")
    front_proxy_ca = TestCa("front-proxy-ca")
    trust = RequestHeaderTrust(client_ca_pem=front_proxy_ca.pem, allowed_names=("front-proxy-client",))
    sim = Simulation(
        containers=[
            SimContainer("shop", "web-1", "app", cpu_millicores=250),
            SimContainer("default", "redis", "redis", node="node-2", cpu_millicores=40),
        ],
        pod_labels={("shop", "web-1"): {"app": "web"}},
    )
    with (
        KubeApiStandIn(workdir, configmap_data=None, policy=rbac) as standin,
        requests.Session() as kube_session,
        requests.Session() as session,
        running_aggregator(sim, scrapes=4, query_token=QUERY_TOKEN) as main,
    ):
        kube = KubernetesApi(
            kube_session,
            url=standin.url,
            token_file=standin.service_account_dir / "token",
            ca_file=standin.service_account_dir / "ca.crt",
        )
        reviewer = SubjectAccessReviewer(kube, allowed_ttl_seconds=10, denied_ttl_seconds=10)
        with serve_metrics_api(main.app.state.aggregator, trust, reviewer, workdir) as served:
            yield Setup(
                served=served,
                trust=trust,
                main=main,
                standin=standin,
                client=front_proxy_ca.issue(workdir, "front-proxy-client", client=True),
                other_name=front_proxy_ca.issue(workdir, "not-the-front-proxy", client=True),
                other_ca=TestCa("some other CA").issue(workdir, "front-proxy-client", client=True),
                session=session,
            )


def _main_api(setup: Setup, path: str) -> requests.Response:
    return requests.get(
        f"{setup.main.url}{path}", headers={"Authorization": f"Bearer {QUERY_TOKEN}"}, timeout=30
    )


@pytest.mark.parametrize(
    "path",
    [
        "/apis",
        "/apis/metrics.k8s.io",
        GV,
        f"{GV}/nodes",
        f"{GV}/nodes/node-2",
        f"{GV}/pods",
        f"{GV}/namespaces/shop/pods?labelSelector=app%3Dweb",
        f"{GV}/namespaces/default/pods/redis",
    ],
)
def test_an_allowed_user_gets_what_the_query_api_serves_without_its_token(setup: Setup, path: str) -> None:
    response = setup.proxied(path, "alice", "devs")

    assert response.status_code == 200, response.text
    expected = _main_api(setup, path)
    assert expected.status_code == 200
    assert response.json() == expected.json()
    assert requests.get(f"{setup.main.url}{path}", timeout=30).status_code == 401


def test_the_metrics_are_real_data(setup: Setup) -> None:
    body = setup.proxied(f"{GV}/namespaces/shop/pods", "alice").json()

    assert [pod["metadata"]["name"] for pod in body["items"]] == ["web-1"]
    assert body["items"][0]["containers"][0]["usage"]["cpu"] == "250m"


def test_a_certificate_from_another_ca_fails_the_handshake(setup: Setup) -> None:
    before = len(setup.standin.requests)

    with pytest.raises(requests.exceptions.ConnectionError):
        setup.get(f"{GV}/nodes", cert=setup.other_ca, headers={"X-Remote-User": "alice"})
    assert len(setup.standin.requests) == before


@pytest.mark.parametrize(
    ("cert", "headers", "reason"),
    [
        (None, {"X-Remote-User": "alice"}, "no client certificate"),
        ("other_name", {"X-Remote-User": "alice"}, "CN 'not-the-front-proxy' is not an allowed"),
        ("client", {"X-Remote-Group": "system:masters"}, "names no user"),
    ],
)
def test_requests_not_from_the_front_proxy_are_unauthorized_before_any_review(
    setup: Setup, cert: str | None, headers: dict[str, str], reason: str
) -> None:
    before_reviews = len(setup.standin.reviews())
    before_count = setup.counted("unauthenticated")

    response = setup.get(f"{GV}/pods", cert=getattr(setup, cert) if cert else None, headers=headers)

    assert response.status_code == 401
    status = response.json()
    assert (status["kind"], status["status"], status["reason"], status["code"]) == (
        "Status",
        "Failure",
        "Unauthorized",
        401,
    )
    assert reason in status["message"]
    assert "items" not in response.text
    assert len(setup.standin.reviews()) == before_reviews
    assert setup.counted("unauthenticated") == before_count + 1


def test_a_user_rbac_denies_gets_403_worded_as_the_api_server_words_it(setup: Setup) -> None:
    before = setup.counted("forbidden")

    response = setup.proxied(f"{GV}/namespaces/shop/pods/web-1", "bob", "devs")

    assert response.status_code == 403
    assert response.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods.metrics.k8s.io "web-1" is forbidden: User "bob" cannot get resource "pods" in API '
        'group "metrics.k8s.io" in the namespace "shop"',
        "reason": "Forbidden",
        "details": {"name": "web-1", "group": "metrics.k8s.io", "kind": "pods"},
        "code": 403,
    }
    review = setup.standin.reviews()[-1]
    assert review["spec"] == {
        "user": "bob",
        "groups": ["devs", "system:authenticated"],
        "resourceAttributes": {
            "namespace": "shop",
            "verb": "get",
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "resource": "pods",
            "name": "web-1",
        },
    }
    assert setup.counted("forbidden") == before + 1


def test_decisions_are_cached_so_a_repeat_sends_no_review(setup: Setup) -> None:
    path = f"{GV}/namespaces/cache-test/pods"
    assert setup.proxied(path, "alice").status_code == 200
    reviews = len(setup.standin.reviews())

    for _ in range(3):
        assert setup.proxied(path, "alice").status_code == 200
        assert setup.proxied(path, "bob").status_code == 403

    # One more for bob's first question, none for the repeats.
    assert len(setup.standin.reviews()) == reviews + 1


def test_the_kube_aggregators_availability_check_passes_without_a_review(setup: Setup) -> None:
    before = len(setup.standin.reviews())

    # What the availability controller sends: system:kube-aggregator in system:masters, on discovery.
    response = setup.proxied(GV, "system:kube-aggregator", "system:masters")

    assert response.status_code == 200
    assert response.json()["kind"] == "APIResourceList"
    assert len(setup.standin.reviews()) == before


@pytest.mark.parametrize(
    "path", ["/openapi/v2", "/openapi/v3", "/docs", "/openapi.json", f"{GV}/namespaces/shop/deployments"]
)
def test_no_openapi_here_unknown_paths_are_a_404_status_the_aggregator_skips(setup: Setup, path: str) -> None:
    response = setup.proxied(path, "alice")

    assert response.status_code == 404
    assert response.json()["reason"] == "NotFound"
    assert response.json()["message"] == "the server could not find the requested resource"


def test_a_watch_is_refused_not_answered_with_a_list(setup: Setup) -> None:
    response = setup.proxied(f"{GV}/pods?watch=true", "alice")

    assert response.status_code == 405
    assert response.json()["reason"] == "MethodNotAllowed"
    assert setup.standin.reviews()[-1]["spec"]["resourceAttributes"]["verb"] == "watch"


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
def test_probes_answer_without_a_certificate(setup: Setup, path: str) -> None:
    assert setup.get(path).status_code == 200


def test_when_the_api_server_cannot_be_asked_requests_fail_closed(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    standin = KubeApiStandIn(tmp_path, configmap_data=None, policy=rbac)
    standin.stop()  # never started: connections to its port are refused
    with requests.Session() as kube_session:
        kube = KubernetesApi(
            kube_session,
            url=standin.url,
            token_file=standin.service_account_dir / "token",
            ca_file=standin.service_account_dir / "ca.crt",
        )
        reviewer = SubjectAccessReviewer(kube, allowed_ttl_seconds=10, denied_ttl_seconds=10)
        trust = RequestHeaderTrust(
            client_ca_pem=setup.trust.client_ca_pem, allowed_names=("front-proxy-client",)
        )
        before = setup.counted("authorization_failed")
        state = setup.main.app.state.aggregator
        with (
            caplog.at_level(logging.ERROR, logger="aggregator.api.metrics_api_guard"),
            serve_metrics_api(state, trust, reviewer, tmp_path) as served,
        ):
            response = setup.session.get(
                f"{served.url}{GV}/nodes",
                cert=setup.client.pair,
                headers={"X-Remote-User": "alice"},
                verify=str(served.serving_cert),
                timeout=30,
            )

    assert response.status_code == 503
    assert response.json()["reason"] == "ServiceUnavailable"
    assert "could not be asked" in response.json()["message"]
    assert "items" not in response.text
    assert setup.counted("authorization_failed") == before + 1
    assert any("cannot authorize user 'alice'" in record.getMessage() for record in caplog.records)
