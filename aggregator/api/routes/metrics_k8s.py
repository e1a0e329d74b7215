"""``metrics.k8s.io/v1beta1`` as metrics-server serves it, plus the discovery documents ``kubectl top`` needs.

Behind an ``APIService`` the Kubernetes API server proxies ``/apis/metrics.k8s.io/v1beta1/...`` here and
reads ``/apis``, ``/apis/metrics.k8s.io`` and ``/apis/metrics.k8s.io/v1beta1`` for discovery. Usage is the
latest complete sample (CPU rate and working set) of each node and container: CPU as nanocores in canonical
decimal SI (``1500m``), memory in canonical binary SI (``12345Ki``); ``timestamp`` is the start of the
sample's bucket and ``window`` the aggregator's resolution, over which the CPU rate was measured. Errors are
Kubernetes ``Status`` objects, as the API server returns them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from aggregator.api.metrics_k8s_json import node_metrics, node_metrics_list, pod_metrics
from aggregator.api.query_deps import QueryApiDep, QueryServiceDep, require_query_token
from aggregator.api.schemas_metrics_k8s import (
    GROUP,
    GROUP_VERSION,
    VERSION,
    APIGroup,
    APIGroupList,
    APIResource,
    APIResourceList,
    GroupVersionForDiscovery,
    NodeMetrics,
    NodeMetricsList,
    PodMetrics,
    PodMetricsList,
    Status,
    StatusDetails,
)
from aggregator.query.errors import NotFoundError, QueryError
from aggregator.query.selector import parse_selector

_REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 503: "ServiceUnavailable"}


def status_response(code: int, message: str, details: StatusDetails | None = None) -> JSONResponse:
    """A Kubernetes ``Status`` failure with HTTP status ``code``."""
    status = Status(message=message, reason=_REASONS.get(code, "InternalError"), details=details, code=code)
    headers = {"WWW-Authenticate": 'Bearer realm="kpulse-query"'} if code == 401 else None
    return JSONResponse(
        status.model_dump(by_alias=True, exclude_none=True), status_code=code, headers=headers
    )


class _KubernetesRoute(APIRoute):
    """Answers query errors and malformed parameters with a Kubernetes ``Status``, as the API server does."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_errors(request: Request) -> Response:
            try:
                return await handle(request)
            except NotFoundError as exc:
                # The API server's wording: `pods.metrics.k8s.io "web-1" not found`.
                resource = exc.kind or "pods"
                return status_response(
                    404,
                    f'{resource}.{GROUP} "{exc.name}" not found',
                    StatusDetails(name=exc.name, group=GROUP, kind=resource),
                )
            except QueryError as exc:
                return status_response(exc.status_code, str(exc))
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                    for error in exc.errors()
                )
                return status_response(400, f"invalid request: {problems}")

        return handle_errors


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Status, "description": "Malformed ``labelSelector`` or name."},
    401: {"model": Status, "description": "A query token is set and the request lacks it."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Status, "description": "No metrics for that name."}
}

router = APIRouter(
    prefix="/apis",
    tags=["metrics.k8s.io"],
    route_class=_KubernetesRoute,
    dependencies=[Depends(require_query_token)],
    responses=_ERRORS,
)

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Kubernetes names (and Docker's, which the Docker source uses as pod names) fit; ``.``/``..`` do not."""

Name = Annotated[str, Path(description="Object name.", pattern=_NAME_PATTERN, max_length=253)]
Namespace = Annotated[str, Path(description="Namespace.", pattern=_NAME_PATTERN, max_length=253)]
LabelSelector = Annotated[
    str | None,
    Query(
        alias="labelSelector",
        description="Kubernetes label selector: a=b, a!=b, a in (b,c), a notin (b), a, !a, comma-separated.",
        examples=["app=web,tier in (front,back)"],
    ),
]

_GROUP_VERSION = GroupVersionForDiscovery(group_version=GROUP_VERSION, version=VERSION)
_API_GROUP = APIGroup(name=GROUP, versions=[_GROUP_VERSION], preferred_version=_GROUP_VERSION)


# -- discovery -----------------------------------------------------------------------------------------


@router.get("", response_model_exclude_none=True, summary="API groups (discovery)")
def api_groups() -> APIGroupList:
    """The API groups served here: only ``metrics.k8s.io``."""
    return APIGroupList(groups=[_API_GROUP])


@router.get(f"/{GROUP}", response_model_exclude_none=True, summary="The metrics.k8s.io group (discovery)")
def api_group() -> APIGroup:
    """``metrics.k8s.io`` and its one version."""
    return _API_GROUP


@router.get(
    f"/{GROUP_VERSION}", response_model_exclude_none=True, summary="Resources of metrics.k8s.io/v1beta1"
)
def api_resources() -> APIResourceList:
    """``nodes`` (cluster-scoped) and ``pods`` (namespaced), both get and list."""
    return APIResourceList(
        group_version=GROUP_VERSION,
        resources=[
            APIResource(
                name="nodes", singular_name="", namespaced=False, kind="NodeMetrics", verbs=["get", "list"]
            ),
            APIResource(
                name="pods", singular_name="", namespaced=True, kind="PodMetrics", verbs=["get", "list"]
            ),
        ],
    )


# -- nodes and pods ---------------------------------------------------------------------------------
# These routes render JSON bytes themselves (``metrics_k8s_json``) and return a ``Response``, which FastAPI
# sends as it is: no model per object and no second validation against ``response_model``, which stays
# for the OpenAPI document. A 30,000-pod list is otherwise seconds of pydantic.


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.get(
    f"/{GROUP_VERSION}/nodes",
    response_model=NodeMetricsList,
    response_model_exclude_none=True,
    summary="NodeMetrics of every node",
)
def list_node_metrics(service: QueryServiceDep, label_selector: LabelSelector = None) -> Response:
    """Latest usage of every node that reports (matching ``labelSelector``), sorted by name."""
    selector = parse_selector(label_selector)
    nodes = service.node_usage(selector=selector)
    return _json(node_metrics_list(nodes, now_ns=service.now_ns(), resolution_ns=service.resolution_ns))


@router.get(
    f"/{GROUP_VERSION}/nodes/{{name}}",
    response_model=NodeMetrics,
    response_model_exclude_none=True,
    responses=_NOT_FOUND,
    summary="NodeMetrics of one node",
)
def get_node_metrics(service: QueryServiceDep, name: Name) -> Response:
    """Latest usage of node ``name``; 404 when it has no recent metrics."""
    found = service.node_usage(name)
    if not found:
        raise NotFoundError(f"node {name!r} has no recent metrics", kind="nodes", name=name)
    return _json(node_metrics(found[0], now_ns=service.now_ns(), resolution_ns=service.resolution_ns))


@router.get(
    f"/{GROUP_VERSION}/pods",
    response_model=PodMetricsList,
    response_model_exclude_none=True,
    summary="PodMetrics of every pod",
)
def list_all_pod_metrics(query: QueryApiDep, label_selector: LabelSelector = None) -> Response:
    """Latest usage of every pod in every namespace (matching ``labelSelector``)."""
    return _json(query.pods_view.pods_list(namespace=None, selector=parse_selector(label_selector)))


@router.get(
    f"/{GROUP_VERSION}/namespaces/{{namespace}}/pods",
    response_model=PodMetricsList,
    response_model_exclude_none=True,
    summary="PodMetrics of a namespace's pods",
)
def list_pod_metrics(
    query: QueryApiDep, namespace: Namespace, label_selector: LabelSelector = None
) -> Response:
    """Latest usage of every pod of ``namespace`` (matching ``labelSelector``); empty for an unknown one."""
    return _json(query.pods_view.pods_list(namespace=namespace, selector=parse_selector(label_selector)))


@router.get(
    f"/{GROUP_VERSION}/namespaces/{{namespace}}/pods/{{name}}",
    response_model=PodMetrics,
    response_model_exclude_none=True,
    responses=_NOT_FOUND,
    summary="PodMetrics of one pod",
)
def get_pod_metrics(service: QueryServiceDep, namespace: Namespace, name: Name) -> Response:
    """Latest usage of the pod's containers; 404 when it has no recent metrics."""
    found = service.pod_usage(namespace=namespace, name=name)
    if not found:
        raise NotFoundError(f"pod {namespace}/{name} has no recent metrics", kind="pods", name=name)
    return _json(pod_metrics(found[0], now_ns=service.now_ns(), resolution_ns=service.resolution_ns))
