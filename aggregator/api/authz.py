"""May the user the front proxy names do what it asks? A SubjectAccessReview, its answer cached briefly.

As every aggregated API server (metrics-server included) does: the request becomes Kubernetes authorization
attributes, parsed from the path the way the API server parses it (resource attributes under
``/apis/<group>/<version>/...``, a non-resource path and verb for discovery and anything else); the API
server is asked with an ``authorization.k8s.io/v1`` SubjectAccessReview; its decision is reused for a few
seconds per identical question (allowed and denied alike; a failure to ask is never cached). Members of
``system:masters`` are allowed without asking, as the API server's delegating authorizer allows them (the
kube-aggregator's availability check arrives as ``system:kube-aggregator`` in that group).

Usage::

    reviewer = SubjectAccessReviewer(kube, allowed_ttl_seconds=10, denied_ttl_seconds=10)
    attributes = request_attributes("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods", b"")
    decision = await reviewer.authorize(user, attributes)    # KubernetesApiError: could not ask
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio.to_thread
from pydantic import BaseModel, Field, ValidationError

from aggregator.api.front_proxy import UserInfo
from aggregator.api.kube_client import KubernetesApi
from aggregator.errors import KubernetesApiError

REVIEW_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
PRIVILEGED_GROUPS = frozenset({"system:masters"})
"""Allowed everything without a review, as the API server's ``--authorization-always-allow-groups``."""
CACHE_MAX_ENTRIES = 10_000
"""Bounds the decisions kept; the oldest go first."""

_API_PREFIXES = {"api": False, "apis": True}
"""Path prefixes of resource requests, and whether an API group follows the prefix (``/api`` has none)."""
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_METHOD_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}


@dataclass(frozen=True, slots=True)
class ResourceAttributes:
    """A request on a resource: ``verb`` (get, list, watch, ...) on ``resource`` of ``group``/``version``."""

    verb: str
    group: str
    version: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""


@dataclass(frozen=True, slots=True)
class NonResourceAttributes:
    """A request on a plain path (discovery, /openapi/v2, ...): the lower-case HTTP method is the verb."""

    verb: str
    path: str


Attributes = ResourceAttributes | NonResourceAttributes


@dataclass(frozen=True, slots=True)
class Decision:
    """The API server's answer: ``allowed``, and its ``reason`` (often empty)."""

    allowed: bool
    reason: str = ""


class Authorizer(Protocol):
    """Decides requests of authenticated users."""

    async def authorize(self, user: UserInfo, attributes: Attributes) -> Decision:
        """The decision on ``attributes`` for ``user``; :class:`KubernetesApiError` when it cannot be made."""
        ...


def request_attributes(method: str, path: str, query_string: bytes) -> Attributes:
    """The authorization attributes of an HTTP request, as the API server derives them from the URL."""
    parts = [part for part in path.strip("/").split("/") if part]
    has_group = _API_PREFIXES.get(parts[0]) if parts else None
    if has_group is None or len(parts) < (4 if has_group else 3):
        return NonResourceAttributes(verb=method.lower(), path=path)
    group = parts[1] if has_group else ""
    rest = parts[2:] if has_group else parts[1:]
    version, rest = rest[0], rest[1:]
    verb = _METHOD_VERBS.get(method.upper(), method.lower())
    if rest and rest[0] == "watch":
        verb, rest = "watch", rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 and verb != "watch" else ""
    if not name and verb == "get":
        watch = parse_qs(query_string.decode("latin-1")).get("watch", [""])[0]
        verb = "watch" if watch in _TRUE else "list"
    elif not name and verb == "delete":
        verb = "deletecollection"
    return ResourceAttributes(
        verb=verb,
        group=group,
        version=version,
        resource=resource,
        namespace=namespace,
        name=name,
        subresource=subresource,
    )


def review_spec(user: UserInfo, attributes: Attributes) -> dict[str, Any]:
    """The ``spec`` of a SubjectAccessReview asking whether ``user`` may do ``attributes``."""
    spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra.items()}
    if isinstance(attributes, NonResourceAttributes):
        spec["nonResourceAttributes"] = {"path": attributes.path, "verb": attributes.verb}
    else:
        fields = {
            "namespace": attributes.namespace,
            "verb": attributes.verb,
            "group": attributes.group,
            "version": attributes.version,
            "resource": attributes.resource,
            "subresource": attributes.subresource,
            "name": attributes.name,
        }
        # The API server leaves empty attributes out (omitempty); "verb" and "resource" are never empty here.
        spec["resourceAttributes"] = {key: value for key, value in fields.items() if value}
    return spec


def review_body(spec: dict[str, Any]) -> bytes:
    """The JSON body POSTed to :data:`REVIEW_PATH`."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
    return json.dumps(review, separators=(",", ":")).encode()


class _ReviewStatus(BaseModel):
    allowed: bool = False
    denied: bool = False
    reason: str = ""
    evaluation_error: str = Field(default="", alias="evaluationError")


class _Review(BaseModel):
    status: _ReviewStatus = _ReviewStatus()


def parse_review(payload: bytes) -> Decision:
    """The decision in a SubjectAccessReview the API server answered with; not allowed unless it says so."""
    try:
        review = _Review.model_validate_json(payload)
    except ValidationError as exc:
        raise KubernetesApiError(
            f"the API server answered a SubjectAccessReview with no review: {exc}"
        ) from exc
    status = review.status
    reason = status.reason or status.evaluation_error
    return Decision(allowed=status.allowed and not status.denied, reason=reason)


def forbidden_message(user: UserInfo, attributes: Attributes, reason: str = "") -> str:
    """The API server's wording of a denial, e.g. ``User "bob" cannot list resource "pods" in ...``."""
    if isinstance(attributes, NonResourceAttributes):
        text = f'User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
    else:
        resource = attributes.resource
        if attributes.subresource:
            resource = f"{resource}/{attributes.subresource}"
        text = (
            f'User "{user.name}" cannot {attributes.verb} resource "{resource}" in API group '
            f'"{attributes.group}"'
        )
        text += (
            f' in the namespace "{attributes.namespace}"' if attributes.namespace else " at the cluster scope"
        )
    return f"{text}: {reason}" if reason else text


class SubjectAccessReviewer:
    """Asks the API server (a SubjectAccessReview per distinct question) and remembers answers briefly."""

    def __init__(
        self,
        kube: KubernetesApi,
        *,
        allowed_ttl_seconds: float,
        denied_ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = CACHE_MAX_ENTRIES,
    ) -> None:
        self._kube = kube
        self._allowed_ttl = allowed_ttl_seconds
        self._denied_ttl = denied_ttl_seconds
        self._clock = clock
        self._max_entries = max_entries
        # Touched from the event loop only; the request itself runs in a worker thread.
        self._cache: OrderedDict[str, tuple[float, Decision]] = OrderedDict()

    async def authorize(self, user: UserInfo, attributes: Attributes) -> Decision:
        """The decision for ``user`` on ``attributes`` (cached ones reused for their TTL, in seconds)."""
        if PRIVILEGED_GROUPS.intersection(user.groups):
            return Decision(allowed=True, reason="privileged group")
        spec = review_spec(user, attributes)
        key = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None:
            expires_at, decision = cached
            if now < expires_at:
                return decision
            del self._cache[key]
        decision = await anyio.to_thread.run_sync(self.review, spec)
        ttl = self._allowed_ttl if decision.allowed else self._denied_ttl
        if ttl > 0:
            self._cache[key] = (self._clock() + ttl, decision)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return decision

    def review(self, spec: dict[str, Any]) -> Decision:
        """Ask the API server now (blocking); :class:`KubernetesApiError` when it cannot answer."""
        return parse_review(self._kube.post(REVIEW_PATH, review_body(spec)))
