"""Front-proxy authentication: the ConfigMap the API server publishes, and the user a proxied request names.

Expected values follow the Kubernetes requestheader authenticator: the first non-empty username header
wins, every value of every group header is a group (one header line each, not comma-split), extra keys are
the lower-cased, %-unescaped rest of the header name, and authenticated users join system:authenticated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregator.api.front_proxy import (
    RequestHeaderTrust,
    Unauthenticated,
    UserInfo,
    authenticate,
    common_name,
    parse_authentication_configmap,
)
from aggregator.errors import FrontProxyConfigError
from tests.aggregator.api.kube_standin import authentication_configmap_data
from tests.pki import TestCa


@pytest.fixture(scope="module")
def front_proxy_ca() -> TestCa:
    return TestCa("front-proxy-ca")


@pytest.fixture(scope="module")
def certs(front_proxy_ca: TestCa, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("front-proxy")
    return {
        name: front_proxy_ca.issue(directory, name, client=True).cert_file.read_text()
        for name in ("front-proxy-client", "someone-else")
    }


def _configmap(data: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
            "data": data,
        }
    ).encode()


def _headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    # As ASGI servers hand them over: lower-case names, repeated headers kept in order.
    return [(name.lower().encode(), value.encode()) for name, value in pairs]


def test_the_configmap_a_kubeadm_api_server_writes_gives_its_front_proxy_trust(
    front_proxy_ca: TestCa,
) -> None:
    data = authentication_configmap_data(
        front_proxy_ca.pem, allowed_names=["front-proxy-client"], client_ca_pem="unrelated client CA"
    )

    trust = parse_authentication_configmap(_configmap(data))

    assert trust == RequestHeaderTrust(
        client_ca_pem=front_proxy_ca.pem.strip(),
        allowed_names=("front-proxy-client",),
        username_headers=("X-Remote-User",),
        group_headers=("X-Remote-Group",),
        extra_headers_prefixes=("X-Remote-Extra-",),
        uid_headers=(),
    )


def test_lists_the_api_server_leaves_out_are_empty_and_uid_headers_are_read(front_proxy_ca: TestCa) -> None:
    data = authentication_configmap_data(front_proxy_ca.pem, allowed_names=[])
    data["requestheader-uid-headers"] = '["X-Remote-Uid"]'

    trust = parse_authentication_configmap(_configmap(data))

    assert trust.allowed_names == ()
    assert trust.uid_headers == ("X-Remote-Uid",)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"requestheader-client-ca-file": ""}, "no requestheader-client-ca-file"),
        ({"requestheader-client-ca-file": "not a certificate"}, "not PEM"),
        ({"requestheader-allowed-names": "front-proxy-client"}, "requestheader-allowed-names is not JSON"),
        ({"requestheader-group-headers": '{"a": 1}'}, "not a JSON array of strings"),
        ({"requestheader-username-headers": "[]"}, "names no requestheader username header"),
    ],
)
def test_a_configmap_no_request_could_pass_is_refused_saying_why(
    front_proxy_ca: TestCa, change: dict[str, str], complaint: str
) -> None:
    data = {**authentication_configmap_data(front_proxy_ca.pem, allowed_names=["x"]), **change}

    with pytest.raises(FrontProxyConfigError, match=complaint):
        parse_authentication_configmap(_configmap(data))


def test_a_payload_that_is_not_a_configmap_is_refused() -> None:
    with pytest.raises(FrontProxyConfigError, match="is not a ConfigMap"):
        parse_authentication_configmap(b'{"data": ["a list"]}')


def test_the_user_groups_and_extras_come_from_the_configured_headers(
    front_proxy_ca: TestCa, certs: dict[str, str]
) -> None:
    trust = RequestHeaderTrust(client_ca_pem=front_proxy_ca.pem, allowed_names=("front-proxy-client",))
    headers = _headers(
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "devs"),
        ("X-Remote-Group", "ops,oncall"),
        ("X-Remote-Extra-Scopes", "view"),
        ("X-Remote-Extra-Scopes", "edit"),
        ("X-Remote-Extra-Example.org%2Fteam", "blue"),
        ("X-Remote-Extra-Bad%zzKey", "kept"),
        ("Accept", "application/json"),
    )

    user = authenticate([certs["front-proxy-client"]], headers, trust)

    assert user == UserInfo(
        name="alice",
        groups=("devs", "ops,oncall", "system:authenticated"),
        uid="",
        extra={"scopes": ("view", "edit"), "example.org/team": ("blue",), "bad%zzkey": ("kept",)},
    )


def test_the_first_username_header_with_a_value_wins_and_uid_is_read(
    front_proxy_ca: TestCa, certs: dict[str, str]
) -> None:
    trust = RequestHeaderTrust(
        client_ca_pem=front_proxy_ca.pem,
        username_headers=("X-Primary-User", "X-Remote-User"),
        uid_headers=("X-Remote-Uid",),
    )
    headers = _headers(
        ("X-Primary-User", ""),
        ("X-Remote-User", "bob"),
        ("X-Remote-Uid", "1234"),
        ("X-Remote-Group", "system:authenticated"),
    )

    user = authenticate([certs["someone-else"]], headers, trust)

    assert isinstance(user, UserInfo)
    assert (user.name, user.uid, user.groups) == ("bob", "1234", ("system:authenticated",))


def test_an_unauthenticated_group_is_not_made_authenticated(
    front_proxy_ca: TestCa, certs: dict[str, str]
) -> None:
    trust = RequestHeaderTrust(client_ca_pem=front_proxy_ca.pem)
    headers = _headers(("X-Remote-User", "system:anonymous"), ("X-Remote-Group", "system:unauthenticated"))

    user = authenticate([certs["front-proxy-client"]], headers, trust)

    assert isinstance(user, UserInfo)
    assert user.groups == ("system:unauthenticated",)


@pytest.mark.parametrize(
    ("cert", "allowed", "headers", "reason"),
    [
        (None, (), [("X-Remote-User", "alice")], "no client certificate"),
        ("someone-else", ("front-proxy-client",), [("X-Remote-User", "alice")], "CN 'someone-else'"),
        ("front-proxy-client", ("front-proxy-client",), [("X-Remote-Group", "devs")], "names no user"),
        ("front-proxy-client", (), [("X-Remote-User", "")], "names no user"),
    ],
)
def test_requests_not_from_the_front_proxy_or_without_a_user_are_unauthenticated(
    front_proxy_ca: TestCa,
    certs: dict[str, str],
    cert: str | None,
    allowed: tuple[str, ...],
    headers: list[tuple[str, str]],
    reason: str,
) -> None:
    trust = RequestHeaderTrust(client_ca_pem=front_proxy_ca.pem, allowed_names=allowed)
    chain = [certs[cert]] if cert else []

    outcome = authenticate(chain, _headers(*headers), trust)

    assert isinstance(outcome, Unauthenticated)
    assert reason in outcome.reason


def test_any_certificate_of_the_ca_passes_when_no_names_are_listed(
    front_proxy_ca: TestCa, certs: dict[str, str]
) -> None:
    trust = RequestHeaderTrust(client_ca_pem=front_proxy_ca.pem, allowed_names=())

    outcome = authenticate([certs["someone-else"]], _headers(("X-Remote-User", "alice")), trust)

    assert isinstance(outcome, UserInfo)


def test_common_name_reads_the_subject(front_proxy_ca: TestCa, tmp_path: Path) -> None:
    issued = front_proxy_ca.issue(tmp_path, "system:kube-aggregator", client=True)

    assert common_name(issued.cert_file.read_text()) == "system:kube-aggregator"
