"""Who calls the metrics API: the API server's front-proxy certificate, and the user it names in headers.

An aggregated API server trusts the user headers (``X-Remote-User``, ``X-Remote-Group``,
``X-Remote-Extra-*``) only on a connection whose TLS client certificate the *requestheader client CA*
signed and whose common name is one of the allowed names (any, when that list is empty). The CA, names and
header names come from settings or from the ConfigMap ``kube-system/extension-apiserver-authentication``,
whose list values are JSON arrays. Everything here is pure; the TLS handshake (which verifies the chain
against the CA) and the ConfigMap read happen elsewhere.

Usage::

    trust = parse_authentication_configmap(payload)          # or RequestHeaderTrust(...) from settings
    outcome = authenticate(client_cert_chain, scope["headers"], trust)
    if isinstance(outcome, Unauthenticated): ...              # 401, outcome.reason says why
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ValidationError

from aggregator.errors import FrontProxyConfigError

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"
CONFIGMAP_PATH = f"/api/v1/namespaces/{CONFIGMAP_NAMESPACE}/configmaps/{CONFIGMAP_NAME}"
"""Where the API server publishes its front-proxy trust for aggregated API servers."""

AUTHENTICATED_GROUP = "system:authenticated"
UNAUTHENTICATED_GROUP = "system:unauthenticated"

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class RequestHeaderTrust:
    """The requestheader options of the API server that proxies to us (its ``--requestheader-*`` flags)."""

    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    uid_headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserInfo:
    """The end user the API server authenticated and names in the request headers."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unauthenticated:
    """The request does not come from the front proxy (or names no user); ``reason`` is for logs and 401s."""

    reason: str


class _ConfigMap(BaseModel):
    data: dict[str, str] = {}


def parse_authentication_configmap(payload: bytes) -> RequestHeaderTrust:
    """The front-proxy trust in the JSON of ConfigMap ``extension-apiserver-authentication``."""
    try:
        configmap = _ConfigMap.model_validate_json(payload)
    except ValidationError as exc:
        raise FrontProxyConfigError(
            f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} is not a ConfigMap: {exc}"
        ) from exc
    data = configmap.data
    ca_pem = data.get("requestheader-client-ca-file", "").strip()
    if not ca_pem:
        raise FrontProxyConfigError(
            f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} has no requestheader-client-ca-file: the API server "
            "runs without --requestheader-client-ca-file, so it cannot authenticate to aggregated APIs"
        )
    trust = RequestHeaderTrust(
        client_ca_pem=ca_pem,
        allowed_names=_json_list(data, "requestheader-allowed-names"),
        username_headers=_json_list(data, "requestheader-username-headers"),
        group_headers=_json_list(data, "requestheader-group-headers"),
        extra_headers_prefixes=_json_list(data, "requestheader-extra-headers-prefix"),
        uid_headers=_json_list(data, "requestheader-uid-headers"),
    )
    check_trust(trust, source=f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}")
    return trust


def _json_list(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    # The API server leaves a key out when its list is empty.
    raw = data.get(key, "").strip()
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FrontProxyConfigError(f"{CONFIGMAP_NAME} key {key} is not JSON: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FrontProxyConfigError(f"{CONFIGMAP_NAME} key {key} is not a JSON array of strings: {raw[:200]}")
    return tuple(value)


def check_trust(trust: RequestHeaderTrust, *, source: str) -> None:
    """Refuse a trust no request could pass: no CA certificate, or no header to name the user."""
    if not trust.username_headers:
        raise FrontProxyConfigError(f"{source} names no requestheader username header")
    try:
        x509.load_pem_x509_certificates(trust.client_ca_pem.encode())
    except ValueError as exc:
        raise FrontProxyConfigError(f"the requestheader client CA from {source} is not PEM: {exc}") from exc


def common_name(cert_pem: str) -> str:
    """The subject common name of a PEM certificate ('' when it has none)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode()


def authenticate(
    client_cert_chain: Sequence[str],
    headers: Iterable[tuple[bytes, bytes]],
    trust: RequestHeaderTrust,
) -> UserInfo | Unauthenticated:
    """The user a front-proxy request names, or why it is not one.

    ``client_cert_chain`` holds the PEM certificates the client presented, already verified against the
    requestheader CA by the TLS handshake; ``headers`` are ASGI headers (lower-case names, repeats kept).
    """
    if not client_cert_chain:
        return Unauthenticated("no client certificate: only the API server's front proxy may call this port")
    name = common_name(client_cert_chain[0])
    if trust.allowed_names and name not in trust.allowed_names:
        return Unauthenticated(f"client certificate CN {name!r} is not an allowed requestheader name")
    values = _header_values(headers)
    user = next((v for h in trust.username_headers for v in values.get(h.lower(), ()) if v), "")
    if not user:
        return Unauthenticated(f"front-proxy request names no user ({', '.join(trust.username_headers)})")
    groups = [v for h in trust.group_headers for v in values.get(h.lower(), ()) if v]
    # As the API server's authenticator chain does: every authenticated user is in system:authenticated.
    if AUTHENTICATED_GROUP not in groups and UNAUTHENTICATED_GROUP not in groups:
        groups.append(AUTHENTICATED_GROUP)
    uid = next((v for h in trust.uid_headers for v in values.get(h.lower(), ()) if v), "")
    return UserInfo(
        name=user, groups=tuple(groups), uid=uid, extra=_extra(values, trust.extra_headers_prefixes)
    )


def _header_values(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        # The API server copies user names as UTF-8; an invalid byte must not raise, only mismatch.
        values.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("utf-8", "replace"))
    return values


def _extra(values: Mapping[str, list[str]], prefixes: Iterable[str]) -> dict[str, tuple[str, ...]]:
    extra: dict[str, list[str]] = {}
    for prefix in prefixes:
        lowered = prefix.lower()
        for name, header_values in values.items():
            if not name.startswith(lowered) or len(name) == len(lowered):
                continue
            key = name[len(lowered) :]
            # Keys are %-escaped on the wire; a malformed escape is kept as sent, as the API server does.
            key = key if _BAD_ESCAPE.search(key) else unquote(key)
            extra.setdefault(key, []).extend(header_values)
    return {key: tuple(items) for key, items in extra.items()}
