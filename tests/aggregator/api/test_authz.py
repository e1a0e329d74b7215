"""Authorization of metrics-API users: attributes from paths, SubjectAccessReviews against an API stand-in.

The attributes are those the API server derives from the same URLs (``kubectl top`` and the kube-aggregator
request exactly these); the reviews go over real HTTPS to the stand-in (tests/aggregator/api/kube_standin.py),
which checks the service account's token and records each review as sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from aggregator.api.authz import (
    Attributes,
    Decision,
    NonResourceAttributes,
    ResourceAttributes,
    SubjectAccessReviewer,
    forbidden_message,
    parse_review,
    request_attributes,
)
from aggregator.api.front_proxy import UserInfo
from aggregator.api.kube_client import KubernetesApi
from aggregator.errors import KubernetesApiError
from tests.aggregator.api.kube_standin import KubeApiStandIn

GV = "/apis/metrics.k8s.io/v1beta1"
ALICE = UserInfo(name="alice", groups=("devs", "system:authenticated"), extra={"scopes": ("view",)})
BOB = UserInfo(name="bob", groups=("system:authenticated",))


def _pods(**fields: str) -> ResourceAttributes:
    values = {"verb": "list", "group": "metrics.k8s.io", "version": "v1beta1", "resource": "pods", **fields}
    return ResourceAttributes(**values)


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", f"{GV}/nodes", b"", _pods(resource="nodes")),
        ("GET", f"{GV}/nodes/node-1", b"", _pods(verb="get", resource="nodes", name="node-1")),
        ("GET", f"{GV}/pods", b"labelSelector=app%3Dweb", _pods()),
        ("GET", f"{GV}/namespaces/shop/pods", b"", _pods(namespace="shop")),
        ("GET", f"{GV}/namespaces/shop/pods/web-1", b"", _pods(verb="get", namespace="shop", name="web-1")),
        ("HEAD", f"{GV}/namespaces/shop/pods/web-1/", b"", _pods(verb="get", namespace="shop", name="web-1")),
        ("GET", f"{GV}/namespaces/shop/pods", b"watch=true", _pods(verb="watch", namespace="shop")),
        ("GET", f"{GV}/watch/namespaces/shop/pods", b"", _pods(verb="watch", namespace="shop")),
        ("DELETE", f"{GV}/namespaces/shop/pods", b"", _pods(verb="deletecollection", namespace="shop")),
        ("POST", f"{GV}/namespaces/shop/pods", b"", _pods(verb="create", namespace="shop")),
        (
            "GET",
            f"{GV}/namespaces/shop",
            b"",
            _pods(verb="get", resource="namespaces", namespace="shop", name="shop"),
        ),
        (
            "GET",
            "/api/v1/namespaces/kube-system/configmaps/x",
            b"",
            _pods(
                verb="get", group="", version="v1", resource="configmaps", namespace="kube-system", name="x"
            ),
        ),
        ("GET", "/apis", b"", NonResourceAttributes("get", "/apis")),
        ("GET", "/apis/metrics.k8s.io", b"", NonResourceAttributes("get", "/apis/metrics.k8s.io")),
        ("GET", GV, b"", NonResourceAttributes("get", GV)),
        ("GET", "/openapi/v2", b"", NonResourceAttributes("get", "/openapi/v2")),
        ("POST", "/version", b"", NonResourceAttributes("post", "/version")),
    ],
)
def test_request_attributes_are_what_the_api_server_derives_from_the_url(
    method: str, path: str, query: bytes, expected: Attributes
) -> None:
    assert request_attributes(method, path, query) == expected


@pytest.mark.parametrize(
    ("attributes", "reason", "message"),
    [
        (
            _pods(namespace="shop"),
            "",
            'User "bob" cannot list resource "pods" in API group "metrics.k8s.io" in the namespace "shop"',
        ),
        (
            _pods(resource="nodes"),
            "no RBAC policy matched",
            'User "bob" cannot list resource "nodes" in API group "metrics.k8s.io" at the cluster scope: '
            "no RBAC policy matched",
        ),
        (NonResourceAttributes("get", "/apis"), "", 'User "bob" cannot get path "/apis"'),
    ],
)
def test_denials_are_worded_as_the_api_server_words_them(
    attributes: Attributes, reason: str, message: str
) -> None:
    assert forbidden_message(BOB, attributes, reason) == message


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"status": {"allowed": true, "reason": "RBAC: allowed"}}', Decision(True, "RBAC: allowed")),
        (b'{"status": {"allowed": false}}', Decision(False, "")),
        (b'{"status": {"allowed": true, "denied": true}}', Decision(False, "")),
        (
            b'{"status": {"allowed": false, "evaluationError": "webhook down"}}',
            Decision(False, "webhook down"),
        ),
        (b"{}", Decision(False, "")),
    ],
)
def test_only_an_explicit_allowed_allows(payload: bytes, expected: Decision) -> None:
    assert parse_review(payload) == expected


def test_an_answer_that_is_not_a_review_is_an_error() -> None:
    with pytest.raises(KubernetesApiError, match="no review"):
        parse_review(b'{"status": "Success"}')


class Policy:
    """alice may list pods in shop; everyone else nothing (RBAC's answer: not allowed, no reason)."""

    def __call__(self, spec: dict[str, Any]) -> tuple[bool, str]:
        attributes = spec.get("resourceAttributes", {})
        if spec["user"] == "alice" and attributes.get("resource") == "pods":
            return True, 'RBAC: allowed by ClusterRoleBinding "metrics-readers"'
        return False, ""


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[KubeApiStandIn]:
    with KubeApiStandIn(tmp_path, configmap_data=None, policy=Policy()) as api:
        yield api


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reviewer(
    standin: KubeApiStandIn, session: requests.Session, clock: Clock, **ttl: float
) -> SubjectAccessReviewer:
    kube = KubernetesApi(
        session,
        url=standin.url,
        token_file=standin.service_account_dir / "token",
        ca_file=standin.service_account_dir / "ca.crt",
    )
    return SubjectAccessReviewer(
        kube,
        allowed_ttl_seconds=ttl.get("allowed", 10.0),
        denied_ttl_seconds=ttl.get("denied", 10.0),
        clock=clock,
    )


def test_the_review_names_the_user_and_the_request_and_carries_the_token(
    standin: KubeApiStandIn, session: requests.Session
) -> None:
    reviewer = _reviewer(standin, session, Clock())

    decision = asyncio.run(reviewer.authorize(ALICE, _pods(namespace="shop")))

    assert decision == Decision(True, 'RBAC: allowed by ClusterRoleBinding "metrics-readers"')
    (recorded,) = standin.recorded("/apis/authorization.k8s.io/v1/subjectaccessreviews")
    assert recorded.method == "POST"
    assert recorded.headers["authorization"] == f"Bearer {standin.token}"
    assert recorded.headers["content-type"] == "application/json"
    assert standin.reviews() == [
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "alice",
                "groups": ["devs", "system:authenticated"],
                "extra": {"scopes": ["view"]},
                "resourceAttributes": {
                    "namespace": "shop",
                    "verb": "list",
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "resource": "pods",
                },
            },
        }
    ]


def test_a_non_resource_request_is_reviewed_by_path_and_verb(
    standin: KubeApiStandIn, session: requests.Session
) -> None:
    decision = asyncio.run(
        _reviewer(standin, session, Clock()).authorize(BOB, NonResourceAttributes("get", "/apis"))
    )

    assert decision.allowed is False
    assert standin.reviews()[0]["spec"] == {
        "user": "bob",
        "groups": ["system:authenticated"],
        "nonResourceAttributes": {"path": "/apis", "verb": "get"},
    }


def test_decisions_are_reused_for_their_ttl_then_asked_again(
    standin: KubeApiStandIn, session: requests.Session
) -> None:
    clock = Clock()
    reviewer = _reviewer(standin, session, clock, allowed=10.0, denied=5.0)

    async def scenario() -> list[bool]:
        seen = []
        for user, advance in [(ALICE, 0), (BOB, 0), (ALICE, 4.9), (BOB, 0), (ALICE, 0), (BOB, 0.2)]:
            clock.now += advance
            seen.append((await reviewer.authorize(user, _pods(namespace="shop"))).allowed)
        return seen

    answers = asyncio.run(scenario())

    assert answers == [True, False, True, False, True, False]
    # alice asked at 0 (cached to 10), bob at 0 (cached to 5); at 5.1 only bob's answer has expired.
    assert [review["spec"]["user"] for review in standin.reviews()] == ["alice", "bob", "bob"]
    clock.now += 5.0
    asyncio.run(reviewer.authorize(ALICE, _pods(namespace="shop")))
    assert [review["spec"]["user"] for review in standin.reviews()] == ["alice", "bob", "bob", "alice"]


def test_a_different_question_is_not_answered_from_the_cache(
    standin: KubeApiStandIn, session: requests.Session
) -> None:
    reviewer = _reviewer(standin, session, Clock())

    async def scenario() -> None:
        await reviewer.authorize(ALICE, _pods(namespace="shop"))
        await reviewer.authorize(ALICE, _pods(namespace="billing"))
        await reviewer.authorize(
            UserInfo(name="alice", groups=("system:authenticated",)), _pods(namespace="shop")
        )

    asyncio.run(scenario())

    assert len(standin.reviews()) == 3


def test_system_masters_are_allowed_without_asking(
    standin: KubeApiStandIn, session: requests.Session
) -> None:
    aggregator = UserInfo(name="system:kube-aggregator", groups=("system:masters", "system:authenticated"))

    decision = asyncio.run(
        _reviewer(standin, session, Clock()).authorize(aggregator, NonResourceAttributes("get", GV))
    )

    assert decision.allowed is True
    assert standin.requests == []


def test_an_unreachable_api_server_is_an_error_and_nothing_is_cached(
    standin: KubeApiStandIn, session: requests.Session
) -> None:
    reviewer = _reviewer(standin, session, Clock())
    standin.stop()

    with pytest.raises(KubernetesApiError, match="did not answer"):
        asyncio.run(reviewer.authorize(ALICE, _pods(namespace="shop")))
    with pytest.raises(KubernetesApiError):
        asyncio.run(reviewer.authorize(ALICE, _pods(namespace="shop")))
