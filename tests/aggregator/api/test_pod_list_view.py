"""The kept pod texts answer every pod list byte for byte as rendering it from the store does, through pods
that appear, stop, get evicted or change labels, and they cost nothing once nobody lists all pods."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.api.metrics_k8s_json import pod_metrics_list
from aggregator.api.pod_list_view import PodListView
from aggregator.api.query_state import QueryApi
from aggregator.pipeline import Pipeline
from aggregator.query.selector import EVERYTHING, Selector, parse_selector
from aggregator.query.service import QueryService
from aggregator.query.store import RecentStore
from tests.aggregator.query.simulation import NS_PER_S, SimContainer, Simulation, make_pipeline


@dataclass
class _Cluster:
    """A simulated cluster feeding a real pipeline, store and view through ``QueryApi.take``, as the
    ingest route does; ``clock_ns`` is what the service and the view take as now."""

    sim: Simulation
    idle_seconds: float = 300.0
    clock_ns: int = 0
    pipeline: Pipeline = field(init=False)
    query: QueryApi = field(init=False)

    def __post_init__(self) -> None:
        self.pipeline = make_pipeline(self.sim)
        # Eviction well inside the window, so pods come and go while their old values are still held.
        store = RecentStore(resolution_seconds=10, window_seconds=300, eviction_seconds=40)
        service = QueryService(store, cluster=self.sim.cluster, clock_ns=lambda: self.clock_ns)
        self.query = QueryApi(service=service, pods_view=PodListView(service, idle_seconds=self.idle_seconds))

    @property
    def view(self) -> PodListView:
        return self.query.pods_view

    def scrape(self) -> None:
        index = self.sim.scrape
        self.sim.scrape += 1
        self.clock_ns = self.sim.scrape_time_ns(index) + NS_PER_S
        for batch in self.sim.batches(index):
            self.query.take(batch, self.pipeline.ingest(batch, now_ns=self.clock_ns), now_ns=self.clock_ns)

    def wait(self, seconds: float) -> None:
        """Time passes without scrapes; the simulation's next scrape comes after it."""
        skipped = round(seconds / self.sim.resolution_seconds)
        self.sim.scrape += skipped
        self.clock_ns += skipped * round(self.sim.resolution_seconds * NS_PER_S)

    def rendered(self, namespace: str | None = None, selector: Selector = EVERYTHING) -> bytes:
        """The list rendered from the store, without the view."""
        service = self.query.service
        pods = service.pod_usage(namespace=namespace, selector=selector)
        return pod_metrics_list(pods, now_ns=self.clock_ns, resolution_ns=service.resolution_ns)

    def listed(self, namespace: str | None = None, selector: Selector = EVERYTHING) -> bytes:
        return self.view.pods_list(namespace=namespace, selector=selector)


def _cluster(idle_seconds: float = 300.0) -> _Cluster:
    sim = Simulation(
        containers=[
            SimContainer("shop", "web-1", "app", cpu_millicores=250),
            SimContainer("shop", "web-1", "sidecar", cpu_millicores=5),
            SimContainer("shop", "web-2", "app", node="node-2", cpu_millicores=700),
            SimContainer("default", "redis", "redis", cpu_millicores=40),
        ],
        pod_labels={("shop", "web-1"): {"app": "web", "track": "stable"}, ("shop", "web-2"): {"app": "web"}},
    )
    return _Cluster(sim, idle_seconds=idle_seconds)


def test_a_list_of_all_pods_activates_the_view_and_later_lists_come_from_it() -> None:
    cluster = _cluster()
    for _ in range(3):
        cluster.scrape()
    assert not cluster.view.active
    # A namespace's list alone does not start it: it is cheap without.
    assert cluster.listed(namespace="shop") == cluster.rendered(namespace="shop")
    assert not cluster.view.active

    assert cluster.listed() == cluster.rendered()
    assert cluster.view.active
    cluster.scrape()
    web = parse_selector("app=web,track!=canary")
    assert cluster.listed() == cluster.rendered()
    assert cluster.listed(namespace="shop", selector=web) == cluster.rendered(namespace="shop", selector=web)
    assert b'"web-2"' in cluster.listed(selector=web)


def test_without_an_all_pods_list_for_the_idle_time_batches_stop_rendering_and_the_texts_go() -> None:
    cluster = _cluster(idle_seconds=25)
    for _ in range(2):
        cluster.scrape()
    cluster.listed()
    for _ in range(2):
        cluster.scrape()
        assert cluster.view.active
    cluster.scrape()  # 30 s after the list
    assert not cluster.view.active
    assert cluster.view.pods_kept == 0
    assert cluster.listed() == cluster.rendered()  # built again, as right as before


def test_a_pod_evicted_from_the_store_leaves_the_view_at_the_next_list() -> None:
    cluster = _cluster()
    for _ in range(3):
        cluster.scrape()
    cluster.listed()
    assert cluster.view.pods_kept == 3
    cluster.sim.containers[:] = [c for c in cluster.sim.containers if c.pod != "redis"]
    for _ in range(6):  # past the 40 s eviction
        cluster.scrape()
    assert cluster.listed() == cluster.rendered()
    assert b'"redis"' not in cluster.listed()
    assert cluster.view.pods_kept == 2


def test_an_idle_time_of_zero_renders_every_list_from_the_store() -> None:
    cluster = _cluster(idle_seconds=0)
    for _ in range(2):
        cluster.scrape()
    assert cluster.listed() == cluster.rendered()
    assert not cluster.view.active


_pods = [("shop", "web-1"), ("shop", "web-2"), ("default", "redis"), ("batch", "job-1")]
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("scrape"), st.integers(1, 3)),
        st.tuples(
            st.just("start"),
            st.sampled_from(_pods),
            st.sampled_from(["app", "side"]),
            st.sampled_from(["node-1", "node-2"]),
        ),
        st.tuples(st.just("stop"), st.sampled_from(_pods), st.sampled_from(["app", "side"])),
        # "" empties a pod's labels, None stops its samples carrying any (the store forgets them in time).
        st.tuples(st.just("label"), st.sampled_from(_pods), st.sampled_from(["web", "db", "", None])),
        st.tuples(st.just("wait"), st.sampled_from([20, 40, 60])),
        st.tuples(st.just("list"), st.none()),
    ),
    max_size=25,
)
_selectors = ["", "app=web", "app!=web", "app"]


@settings(max_examples=120, deadline=None)
@given(_steps)
def test_every_list_is_what_rendering_from_the_store_answers(steps: list[tuple[object, ...]]) -> None:
    cluster = _cluster()
    sim = cluster.sim
    labels: dict[tuple[str, str], Mapping[str, str] | None] = dict(sim.pod_labels)
    sim.pod_labels = labels
    cluster.scrape()
    cluster.scrape()
    cluster.listed()
    for step in steps:
        match step:
            case ("scrape", int(count)):
                for _ in range(count):
                    cluster.scrape()
            case ("start", (str(namespace), str(pod)), str(container), str(node)):
                if not any(
                    (c.namespace, c.pod, c.container) == (namespace, pod, container) for c in sim.containers
                ):
                    sim.containers.append(SimContainer(namespace, pod, container, node=node))
            case ("stop", (str(namespace), str(pod)), str(container)):
                sim.containers[:] = [
                    c
                    for c in sim.containers
                    if (c.namespace, c.pod, c.container) != (namespace, pod, container)
                ]
            case ("label", (str(namespace), str(pod)), app):
                labels[namespace, pod] = None if app is None else {"app": str(app)} if app else {}
            case ("wait", int(seconds)):
                cluster.wait(seconds)
            case ("list", None):
                cluster.listed()
        for namespace in (None, "shop"):
            for text in _selectors:
                selector = parse_selector(text or None)
                assert cluster.listed(namespace, selector) == cluster.rendered(namespace, selector), (
                    namespace,
                    text,
                )
