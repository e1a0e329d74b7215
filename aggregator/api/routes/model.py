"""The Heapster model API (``/api/v1/model/...``): entity listings and metric series, as Heapster served them.

Metric names are Heapster's (``cpu/usage_rate``), mapped to catalog fields by ``aggregator.query.heapster``.
``start``/``end`` are RFC 3339; without ``start`` the whole in-memory window is returned, without ``end``
everything up to now. A range older than the window is read from InfluxDB and joined seamlessly. Values are
Heapster's unsigned integers: rounded, never negative. Unlike Heapster, an unknown entity or metric is a
404 whose ``detail`` names it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from aggregator.api.models import ErrorResponse
from aggregator.api.query_deps import QueryServiceDep, require_query_token
from aggregator.api.schemas_model import MetricPoint, MetricResult, MetricResultList
from aggregator.catalog import Level
from aggregator.query.errors import NotFoundError, QueryError, UnauthorizedError
from aggregator.query.service import QueryService, heapster_metric_for
from aggregator.query.store import Entity
from aggregator.query.timefmt import GO_ZERO_TIME, heapster_time, parse_rfc3339

_UINT64_MAX = 2**64 - 1


class _HeapsterRoute(APIRoute):
    """Turns the query errors raised by a route or its dependencies into ``{"detail": ...}`` answers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_errors(request: Request) -> Response:
            try:
                return await handle(request)
            except QueryError as exc:
                headers = (
                    {"WWW-Authenticate": 'Bearer realm="kpulse-query"'}
                    if isinstance(exc, UnauthorizedError)
                    else None
                )
                return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=headers)

        return handle_errors


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "``start``/``end`` not RFC 3339, or start after end."},
    401: {"model": ErrorResponse, "description": "A query token is set and the request lacks it."},
    404: {"model": ErrorResponse, "description": "Unknown entity or metric; ``detail`` names it."},
    503: {
        "model": ErrorResponse,
        "description": "The range needs InfluxDB history and InfluxDB did not answer.",
    },
}

router = APIRouter(
    prefix="/api/v1/model",
    tags=["heapster model"],
    route_class=_HeapsterRoute,
    dependencies=[Depends(require_query_token)],
    responses=_ERRORS,
)

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Docker and Kubernetes names both fit; a leading dot is refused so ``.``/``..`` never reach the router."""
_LIST_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(,[A-Za-z0-9][A-Za-z0-9_.-]*)*$"
_METRIC_PATTERN = r"^[a-z_]+(/[a-z_]+)?$"


def _name(description: str) -> Any:
    return Path(description=description, pattern=_NAME_PATTERN, max_length=253)


NodeName = Annotated[str, _name("Node name.")]
NamespaceName = Annotated[str, _name("Namespace name.")]
PodName = Annotated[str, _name("Pod name.")]
ContainerName = Annotated[str, _name("Container name.")]
PodList = Annotated[
    str, Path(description="Comma-separated pod names.", pattern=_LIST_PATTERN, max_length=4096)
]
MetricName = Annotated[
    str,
    Path(
        description="A Heapster metric name, e.g. cpu/usage_rate or memory/working_set.",
        pattern=_METRIC_PATTERN,
        max_length=100,
        examples=["cpu/usage_rate"],
    ),
]
Start = Annotated[
    str | None,
    Query(
        description="RFC 3339 start of the range (inclusive); default: the start of the in-memory window.",
        json_schema_extra={"format": "date-time"},
        examples=["2024-05-01T10:00:00Z"],
    ),
]
End = Annotated[
    str | None,
    Query(
        description="RFC 3339 end of the range (inclusive); default: now.",
        json_schema_extra={"format": "date-time"},
        examples=["2024-05-01T11:00:00Z"],
    ),
]


def _result(points: list[tuple[int, float]]) -> MetricResult:
    metrics = [
        MetricPoint(timestamp=heapster_time(time_ns), value=min(max(round(value), 0), _UINT64_MAX))
        for time_ns, value in points
    ]
    latest = heapster_time(points[-1][0]) if points else GO_ZERO_TIME
    return MetricResult(metrics=metrics, latest_timestamp=latest)


def _series(
    service: QueryService, level: Level, entity: Entity, metric: str, *, start: str | None, end: str | None
) -> MetricResult:
    entry = heapster_metric_for(metric, level)
    start_ns = None if start is None else parse_rfc3339(start, name="start")
    end_ns = None if end is None else parse_rfc3339(end, name="end")
    return _result(service.series(level, entity, entry.field, start_ns, end_ns))


# -- cluster -------------------------------------------------------------------------------------------


def _cluster(service: QueryService) -> Entity:
    # The aggregator's own cluster always exists, even before its first rollup (then it has no metric yet).
    return (service.cluster,)


@router.get("/metrics/", summary="Metrics the cluster has")
def cluster_metric_names(service: QueryServiceDep) -> list[str]:
    """Heapster names of the metrics the cluster has in the in-memory window."""
    return service.heapster_metrics(Level.CLUSTER, _cluster(service))


@router.get("/metrics/{metric:path}", summary="A cluster metric")
def cluster_metric(
    service: QueryServiceDep, metric: MetricName, start: Start = None, end: End = None
) -> MetricResult:
    """The cluster's values of ``metric`` (sums over nodes)."""
    return _series(service, Level.CLUSTER, _cluster(service), metric, start=start, end=end)


@router.get("/cluster/metrics/", summary="Metrics the cluster has (alias of /metrics/)")
def cluster_metric_names_alias(service: QueryServiceDep) -> list[str]:
    """Same as ``/metrics/``."""
    return cluster_metric_names(service)


@router.get("/cluster/metrics/{metric:path}", summary="A cluster metric (alias of /metrics/{metric})")
def cluster_metric_alias(
    service: QueryServiceDep, metric: MetricName, start: Start = None, end: End = None
) -> MetricResult:
    """Same as ``/metrics/{metric}``."""
    return cluster_metric(service, metric, start=start, end=end)


# -- nodes ---------------------------------------------------------------------------------------------


@router.get("/nodes/", summary="Nodes")
def node_names(service: QueryServiceDep) -> list[str]:
    """Names of the nodes in the in-memory window."""
    return service.nodes()


@router.get("/nodes/{node}/metrics/", summary="Metrics a node has")
def node_metric_names(service: QueryServiceDep, node: NodeName) -> list[str]:
    """Heapster names of the metrics ``node`` has in the in-memory window."""
    return service.heapster_metrics(Level.NODE, service.entity(Level.NODE, node))


@router.get("/nodes/{node}/metrics/{metric:path}", summary="A node metric")
def node_metric(
    service: QueryServiceDep, node: NodeName, metric: MetricName, start: Start = None, end: End = None
) -> MetricResult:
    """``node``'s own values of ``metric`` (the whole machine, not a sum of its containers)."""
    return _series(service, Level.NODE, service.entity(Level.NODE, node), metric, start=start, end=end)


# -- namespaces ----------------------------------------------------------------------------------------


@router.get("/namespaces/", summary="Namespaces")
def namespace_names(service: QueryServiceDep) -> list[str]:
    """Names of the namespaces in the in-memory window."""
    return service.namespaces()


@router.get("/namespaces/{namespace}/metrics/", summary="Metrics a namespace has")
def namespace_metric_names(service: QueryServiceDep, namespace: NamespaceName) -> list[str]:
    """Heapster names of the metrics ``namespace`` has in the in-memory window."""
    return service.heapster_metrics(Level.NAMESPACE, service.entity(Level.NAMESPACE, namespace))


@router.get("/namespaces/{namespace}/metrics/{metric:path}", summary="A namespace metric")
def namespace_metric(
    service: QueryServiceDep,
    namespace: NamespaceName,
    metric: MetricName,
    start: Start = None,
    end: End = None,
) -> MetricResult:
    """``namespace``'s values of ``metric`` (sums over its pods on every node)."""
    return _series(
        service, Level.NAMESPACE, service.entity(Level.NAMESPACE, namespace), metric, start=start, end=end
    )


# -- pods ----------------------------------------------------------------------------------------------


@router.get("/namespaces/{namespace}/pods/", summary="Pods of a namespace")
def pod_names(service: QueryServiceDep, namespace: NamespaceName) -> list[str]:
    """Names of the pods of ``namespace`` in the in-memory window."""
    return service.pods(namespace)


@router.get("/namespaces/{namespace}/pods/{pod}/metrics/", summary="Metrics a pod has")
def pod_metric_names(service: QueryServiceDep, namespace: NamespaceName, pod: PodName) -> list[str]:
    """Heapster names of the metrics the pod has in the in-memory window."""
    return service.heapster_metrics(Level.POD, service.entity(Level.POD, namespace, pod))


@router.get("/namespaces/{namespace}/pods/{pod}/metrics/{metric:path}", summary="A pod metric")
def pod_metric(
    *,
    service: QueryServiceDep,
    namespace: NamespaceName,
    pod: PodName,
    metric: MetricName,
    start: Start = None,
    end: End = None,
) -> MetricResult:
    """The pod's values of ``metric`` (sums of its containers; network is the pod's own)."""
    return _series(
        service, Level.POD, service.entity(Level.POD, namespace, pod), metric, start=start, end=end
    )


@router.get(
    "/namespaces/{namespace}/pod-list/{pods}/metrics/{metric:path}", summary="A metric of several pods"
)
def pod_list_metric(
    *,
    service: QueryServiceDep,
    namespace: NamespaceName,
    pods: PodList,
    metric: MetricName,
    start: Start = None,
    end: End = None,
) -> MetricResultList:
    """One result per pod named in ``pods`` (comma-separated), in that order; 404 naming any unknown pod."""
    names = pods.split(",")
    missing = [name for name in names if not service.store.has(Level.POD, (service.cluster, namespace, name))]
    if missing:
        raise NotFoundError(
            f"pods not found in namespace {namespace!r}: {', '.join(missing)}", kind="pod", name=missing[0]
        )
    return MetricResultList(
        items=[
            _series(service, Level.POD, (service.cluster, namespace, name), metric, start=start, end=end)
            for name in names
        ]
    )


# -- containers ----------------------------------------------------------------------------------------


@router.get("/namespaces/{namespace}/pods/{pod}/containers/", summary="Containers of a pod")
def container_names(service: QueryServiceDep, namespace: NamespaceName, pod: PodName) -> list[str]:
    """Names of the pod's containers in the in-memory window."""
    return service.containers(namespace, pod)


@router.get(
    "/namespaces/{namespace}/pods/{pod}/containers/{container}/metrics/", summary="Metrics a container has"
)
def container_metric_names(
    service: QueryServiceDep, namespace: NamespaceName, pod: PodName, container: ContainerName
) -> list[str]:
    """Heapster names of the metrics the container has in the in-memory window."""
    entity = service.entity(Level.CONTAINER, namespace, pod, container)
    return service.heapster_metrics(Level.CONTAINER, entity)


@router.get(
    "/namespaces/{namespace}/pods/{pod}/containers/{container}/metrics/{metric:path}",
    summary="A container metric",
)
def container_metric(
    *,
    service: QueryServiceDep,
    namespace: NamespaceName,
    pod: PodName,
    container: ContainerName,
    metric: MetricName,
    start: Start = None,
    end: End = None,
) -> MetricResult:
    """The container's values of ``metric``."""
    entity = service.entity(Level.CONTAINER, namespace, pod, container)
    return _series(service, Level.CONTAINER, entity, metric, start=start, end=end)
