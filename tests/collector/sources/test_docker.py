"""DockerSource against the real engine: identities, advancing counters, vanishing and late containers, and
the inspect cache (updates, restarts and removals seen within a bounded number of scrapes).

The engine is real in every test. Where a test needs something to happen at one exact point of a scrape
(a container removed right after the listing, a stats call that never returns in time, a corrupt payload,
an event stream that misses everything), it wraps the real client in ``EngineProxy``, which passes every
call through and acts at that point.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from collector.errors import SourceError
from collector.settings import CollectorSettings
from collector.sources import Scrape, Source
from collector.sources.docker import DockerSource
from collector.sources.docker_parse import parse_rfc3339_ns
from collector.wire import ContainerSample, PodSample
from tests.collector.sources.conftest import StartContainer, new_api_client, sdk_socket_leak_tolerated
from tests.helpers import wait_until

MIB = 2**20
SLEEP = ["sleep", "100000"]
BURN = ["sh", "-c", "while :; do :; done"]


class EngineProxy:
    """The real low-level client, with hooks between the calls of a scrape and a record of stats calls."""

    def __init__(
        self,
        client: Any,
        *,
        after_list: Callable[[], None] | None = None,
        on_stats: Callable[[str], dict[str, Any] | None] | None = None,
        events_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._client = client
        self._after_list = after_list
        self._on_stats = on_stats
        self._events_kwargs = events_kwargs
        self._lock = threading.Lock()
        self._in_flight = 0
        self.peak_in_flight = 0
        self.stats_seconds: list[float] = []
        self.stats_kwargs: list[dict[str, Any]] = []
        self.inspected: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def containers(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self._client.containers()
        hook, self._after_list = self._after_list, None  # acts on the first scrape only
        if hook is not None:
            hook()
        return listed

    def inspect_container(self, container: str) -> dict[str, Any]:
        with self._lock:
            self.inspected[container] += 1
        result: dict[str, Any] = self._client.inspect_container(container)
        return result

    def events(self, **kwargs: Any) -> Any:
        """The real event stream, asked with ``events_kwargs`` instead when given."""
        return self._client.events(**(self._events_kwargs or kwargs))

    def stats(self, container: str, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.stats_kwargs.append(kwargs)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        started = time.monotonic()
        try:
            replaced = self._on_stats(container) if self._on_stats is not None else None
            if replaced is not None:
                return replaced
            result: dict[str, Any] = self._client.stats(container, **kwargs)
            return result
        finally:
            with self._lock:
                self._in_flight -= 1
                self.stats_seconds.append(time.monotonic() - started)


def by_container(scrape: Scrape) -> dict[str, ContainerSample]:
    return {c.container_id: c for c in scrape.containers}


def by_pod_id(scrape: Scrape) -> dict[str, PodSample]:
    return {p.pod_id: p for p in scrape.pods}


def name_of(docker_api: Any, container_id: str) -> str:
    name: str = docker_api.inspect_container(container_id)["Name"]
    return name.removeprefix("/")


def kubelet_labels(pod: str, container: str) -> dict[str, str]:
    sandbox = container == "POD"
    return {
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.name": pod,
        "io.kubernetes.pod.uid": f"uid-{pod}",
        "io.kubernetes.container.name": container,
        "io.kubernetes.docker.type": "podsandbox" if sandbox else "container",
    }


@pytest.mark.integration
def test_two_scrapes_read_identities_and_advancing_counters(
    docker_api: Any, start_container: StartContainer
) -> None:
    pod = f"web-{uuid.uuid4().hex[:8]}"
    burner = start_container("burner", BURN)
    idle = start_container("idle", SLEEP)
    sandbox = start_container("sandbox", SLEEP, labels=kubelet_labels(pod, "POD"))
    app = start_container(
        "app",
        SLEEP,
        labels=kubelet_labels(pod, "app"),
        network_mode=f"container:{sandbox}",
        nano_cpus=500_000_000,
        mem_limit=64 * MIB,
    )
    engine = EngineProxy(new_api_client())
    # No host memory handed in: the source asks /info, which is what tells unlimited containers apart.
    source = DockerSource(engine, node_name="test-node", concurrency=8, timeout_seconds=30)
    try:
        first = source.collect()
        burned = by_container(first)[burner].cpu_usage_nanoseconds_total
        assert burned is not None

        def advanced() -> Scrape | None:
            scrape = source.collect()
            usage = by_container(scrape)[burner].cpu_usage_nanoseconds_total
            return scrape if usage is not None and usage > burned else None

        second = wait_until(advanced, 30, "the burner's CPU counter never advanced")
    finally:
        source.close()
    assert second is not None

    for scrape in (first, second):
        containers, pods = by_container(scrape), by_pod_id(scrape)
        for plain in (burner, idle):
            name = name_of(docker_api, plain)
            sample = containers[plain]
            assert (sample.namespace, sample.pod, sample.container) == ("default", name, name)
            assert sample.network is not None
            assert pods[plain].network == sample.network
            assert sample.memory_limit_bytes is None  # unlimited: not the host's RAM
            assert sample.cpu_limit_millicores is None
        assert sandbox not in containers
        assert (pods[sandbox].namespace, pods[sandbox].pod) == ("shop", pod)
        assert pods[sandbox].network is not None
        assert app not in pods
        app_sample = containers[app]
        assert (app_sample.namespace, app_sample.pod, app_sample.container) == ("shop", pod, "app")
        assert app_sample.network is None
        assert app_sample.cpu_limit_millicores == 500
        assert app_sample.memory_limit_bytes == 64 * MIB
        for container_id in (burner, idle, app):
            assert containers[container_id].started_at_ns is not None
            assert containers[container_id].restart_count == 0
            assert containers[container_id].process_count == 1

    before, after = by_container(first), by_container(second)
    for container_id in (burner, idle, app):
        assert after[container_id].timestamp_ns > before[container_id].timestamp_ns
        assert after[container_id].started_at_ns == before[container_id].started_at_ns
        used_before = before[container_id].cpu_usage_nanoseconds_total
        used_after = after[container_id].cpu_usage_nanoseconds_total
        assert used_before is not None
        assert used_after is not None
        assert used_after >= used_before
    assert by_pod_id(second)[sandbox].timestamp_ns > by_pod_id(first)[sandbox].timestamp_ns
    # Never the blocking two-sample mode.
    assert engine.stats_kwargs
    assert all(kw == {"stream": False, "one_shot": True} for kw in engine.stats_kwargs)
    assert (source.skipped_timeout, source.parse_errors, source.fetch_errors) == (0, 0, 0)


@pytest.mark.integration
@pytest.mark.parametrize("how", ["removed", "stopped"])
def test_container_gone_mid_scrape_is_skipped_and_counted(
    docker_api: Any, start_container: StartContainer, how: str
) -> None:
    victim = start_container("victim", SLEEP)
    survivors = [start_container("survivor", SLEEP) for _ in range(3)]

    def make_victim_go() -> None:
        if how == "removed":  # inspect and stats answer 404
            docker_api.remove_container(victim, force=True)
        else:  # still listed by the engine but exited: stats answers 200 with a zero "read"
            docker_api.kill(victim)
            docker_api.wait(victim, timeout=30)

    source = DockerSource(
        EngineProxy(new_api_client(), after_list=make_victim_go),
        node_name="test-node",
        concurrency=8,
        timeout_seconds=30,
    )
    try:
        scrape = source.collect()
    finally:
        source.close()

    assert victim not in by_container(scrape)
    assert victim not in by_pod_id(scrape)
    assert set(survivors) <= set(by_container(scrape))
    assert source.skipped_gone >= 1  # other containers on the engine may come and go too
    assert (source.parse_errors, source.fetch_errors) == (0, 0)


@pytest.mark.integration
def test_many_containers_are_read_concurrently(start_container: StartContainer) -> None:
    count = 24
    fleet = [start_container(f"fleet{i}", SLEEP) for i in range(count)]
    engine = EngineProxy(new_api_client())
    source = DockerSource(engine, node_name="test-node", concurrency=32, timeout_seconds=60)
    try:
        started = time.monotonic()
        scrape = source.collect()
        wall = time.monotonic() - started
    finally:
        source.close()

    assert set(fleet) <= set(by_container(scrape))
    # Each stats call waits up to ~1 s for the engine's next collection; read one after the other they
    # would take the sum of their durations, read concurrently about the longest one.
    assert engine.peak_in_flight >= count // 2
    assert wall < 0.5 * sum(engine.stats_seconds), (wall, sorted(engine.stats_seconds))


@pytest.mark.integration
def test_late_container_is_skipped_at_the_deadline(start_container: StartContainer) -> None:
    slow = start_container("slow", SLEEP)
    fast = start_container("fast", SLEEP)
    release = threading.Event()

    def hold_slow(container_id: str) -> None:
        if container_id == slow:
            release.wait(60)  # an engine that never answers for this one container in time
        return None

    deadline_seconds = 4.0
    source = DockerSource(
        EngineProxy(new_api_client(), on_stats=hold_slow),
        node_name="test-node",
        concurrency=8,
        timeout_seconds=deadline_seconds,
    )
    try:
        started = time.monotonic()
        late = source.collect()
        wall = time.monotonic() - started
        release.set()
        # The late worker's answer is dropped; the pool is not poisoned and the next scrape reads it again.
        again = source.collect()
    finally:
        release.set()
        source.close()

    assert wall < deadline_seconds + 2
    assert slow not in by_container(late)
    assert fast in by_container(late)
    assert source.skipped_timeout >= 1
    assert {slow, fast} <= set(by_container(again))


@pytest.mark.integration
def test_bad_payload_is_logged_once_and_skipped(
    docker_api: Any, start_container: StartContainer, caplog: pytest.LogCaptureFixture
) -> None:
    bad = start_container("bad", SLEEP)
    good = start_container("good", SLEEP)
    bad_name = name_of(docker_api, bad)

    def corrupt(container_id: str) -> dict[str, Any] | None:
        return {"read": "yesterday"} if container_id == bad else None

    source = DockerSource(
        EngineProxy(new_api_client(), on_stats=corrupt),
        node_name="test-node",
        concurrency=8,
        timeout_seconds=30,
    )
    try:
        with caplog.at_level(logging.DEBUG, logger="collector.sources.docker"):
            first = source.collect()
            second = source.collect()
    finally:
        source.close()

    for scrape in (first, second):
        assert bad not in by_container(scrape)
        assert good in by_container(scrape)
    assert source.parse_errors >= 2
    about_bad = [r for r in caplog.records if bad_name in r.getMessage()]
    assert [r.levelno for r in about_bad] == [logging.WARNING, logging.DEBUG]


@pytest.mark.integration
def test_from_settings_reads_the_engine_and_the_node(start_container: StartContainer) -> None:
    container_id = start_container("settings", SLEEP)
    settings = CollectorSettings(
        node_name="settings-node", docker_concurrency=4, scrape_timeout_seconds=30, proc_path=Path("/proc")
    )
    source: Source = DockerSource.from_settings(settings)  # also checks that it satisfies the protocol
    assert source.name == "docker"
    try:
        scrape = source.collect()
    finally:
        source.close()
    assert container_id in by_container(scrape)
    assert scrape.node is not None
    assert scrape.node.cpu_capacity_millicores is not None
    assert scrape.node.cpu_capacity_millicores >= 1000


def test_unreachable_engine_fails_the_scrape_with_source_error(tmp_path: Path) -> None:
    socket = tmp_path / "no-engine.sock"
    client = docker.APIClient(base_url=f"unix://{socket}", version="1.41", timeout=5)
    source = DockerSource(client, node_name="test-node", timeout_seconds=5)
    try:
        with sdk_socket_leak_tolerated(), pytest.raises(SourceError, match="cannot reach the engine"):
            source.collect()
    finally:
        source.close()


def test_from_settings_with_an_unreachable_engine_raises_source_error(tmp_path: Path) -> None:
    settings = CollectorSettings(docker_url=f"unix://{tmp_path}/no-engine.sock")
    with sdk_socket_leak_tolerated(), pytest.raises(SourceError, match=r"no-engine\.sock"):
        DockerSource.from_settings(settings)


@pytest.mark.parametrize(("concurrency", "timeout"), [(0, 1.0), (1, 0.0)])
def test_nonsense_limits_are_refused(concurrency: int, timeout: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        DockerSource(object(), node_name="n", concurrency=concurrency, timeout_seconds=timeout)  # type: ignore[arg-type]


# --- the inspect cache ------------------------------------------------------------------------------------

BLIND_EVENTS = {"decode": True, "filters": {"type": "container", "container": ["0" * 64]}}
"""A real event stream about a container that does not exist: the engine's events all go unseen."""


def engine_started_ns(docker_api: Any, container_id: str) -> int:
    return parse_rfc3339_ns(docker_api.inspect_container(container_id)["State"]["StartedAt"])


def warmed_up(source: DockerSource) -> Scrape:
    """Scrape until the event stream is live and a scrape has run with it, so every answer is cached."""
    source.collect()
    wait_until(lambda: source.inspect_cache.live, 10, "the event stream never went live")
    return source.collect()


def scrapes_until(source: DockerSource, holds: Callable[[Scrape], bool], most: int) -> Scrape:
    """Scrape at most ``most`` times until ``holds`` is true of a scrape; fail after that."""
    seen: list[Scrape] = []
    for _ in range(most):
        seen.append(source.collect())
        if holds(seen[-1]):
            return seen[-1]
    raise AssertionError(f"not seen within {most} scrapes: {[s.containers for s in seen]}")


def caching_source(engine: EngineProxy) -> DockerSource:
    """A source whose inspect answers expire only after an hour: only events and restarts refresh them."""
    return DockerSource(
        engine, node_name="test-node", concurrency=8, timeout_seconds=30, inspect_max_age_seconds=3600
    )


@pytest.mark.integration
def test_inspect_answers_are_reused_between_scrapes(start_container: StartContainer) -> None:
    fleet = [start_container(f"cached{i}", SLEEP, cpu_quota=50_000) for i in range(3)]
    engine = EngineProxy(new_api_client())
    source = caching_source(engine)
    try:
        warmed_up(source)
        inspected = Counter({c: engine.inspected[c] for c in fleet})
        later = [source.collect() for _ in range(2)]
    finally:
        source.close()

    assert all(inspected[c] >= 1 for c in fleet)
    assert {c: engine.inspected[c] for c in fleet} == inspected  # no request for any of them since
    for scrape in later:
        for container_id in fleet:
            assert by_container(scrape)[container_id].cpu_limit_millicores == 500


@pytest.mark.integration
def test_updated_limits_are_seen_within_two_scrapes(docker_api: Any, start_container: StartContainer) -> None:
    limited = start_container("limited", SLEEP, cpu_quota=50_000, mem_limit=64 * MIB)
    source = caching_source(EngineProxy(new_api_client()))
    try:
        before = by_container(warmed_up(source))[limited]
        docker_api.update_container(limited, cpu_quota=25_000, mem_limit=32 * MIB)

        def new_limits(scrape: Scrape) -> bool:
            sample = by_container(scrape)[limited]
            return (sample.cpu_limit_millicores, sample.memory_limit_bytes) == (250, 32 * MIB)

        scrapes_until(source, new_limits, most=2)
    finally:
        source.close()
    assert (before.cpu_limit_millicores, before.memory_limit_bytes) == (500, 64 * MIB)


@pytest.mark.integration
def test_restart_is_seen_within_two_scrapes(docker_api: Any, start_container: StartContainer) -> None:
    # Runs until /go appears, then fails once; the engine's restart policy starts it again, for good.
    command = [
        "sh",
        "-c",
        "if [ -e /restarted ]; then exec sleep 100000; fi; "
        "while [ ! -e /go ]; do sleep 0.2; done; touch /restarted; exit 1",
    ]
    restarter = start_container("restarter", command, restart_policy={"Name": "on-failure"})
    source = caching_source(EngineProxy(new_api_client()))
    try:
        before = by_container(warmed_up(source))[restarter]
        exec_id = docker_api.exec_create(restarter, ["touch", "/go"])
        docker_api.exec_start(exec_id)

        def restarted() -> bool:
            state = docker_api.inspect_container(restarter)
            # "Running" is already true while the engine waits to restart it ("restarting").
            return bool(state["RestartCount"] == 1 and state["State"]["Status"] == "running")

        wait_until(restarted, 30, "the engine never restarted the container")
        started_again_ns = engine_started_ns(docker_api, restarter)

        def seen(scrape: Scrape) -> bool:
            sample = by_container(scrape).get(restarter)
            if sample is None:
                return False
            return (sample.restart_count, sample.started_at_ns) == (1, started_again_ns)

        scrapes_until(source, seen, most=2)
    finally:
        source.close()
    assert before.restart_count == 0
    assert before.started_at_ns is not None
    assert before.started_at_ns < started_again_ns


@pytest.mark.integration
def test_removed_container_is_forgotten(docker_api: Any, start_container: StartContainer) -> None:
    leaving = start_container("leaving", SLEEP)
    staying = start_container("staying", SLEEP)
    source = DockerSource(
        EngineProxy(new_api_client()), node_name="test-node", concurrency=8, timeout_seconds=30
    )
    try:
        warmed_up(source)
        assert leaving in source.inspect_cache
        docker_api.remove_container(leaving, force=True)
        after = source.collect()
        kept = (leaving in source.inspect_cache, staying in source.inspect_cache)
    finally:
        source.close()
    assert leaving not in by_container(after)
    assert kept == (False, True)


@pytest.mark.integration
def test_without_events_answers_expire_after_the_max_age(
    docker_api: Any, start_container: StartContainer
) -> None:
    limited = start_container("limited", SLEEP, cpu_quota=50_000)
    max_age = 60.0
    skipped = [0.0]  # seconds the source's clock is ahead of the real one
    source = DockerSource(
        EngineProxy(new_api_client(), events_kwargs=BLIND_EVENTS),
        node_name="test-node",
        concurrency=8,
        timeout_seconds=30,
        inspect_max_age_seconds=max_age,
        monotonic=lambda: time.monotonic() + skipped[0],
    )
    try:
        before = by_container(warmed_up(source))[limited]
        docker_api.update_container(limited, cpu_quota=25_000)
        # The update's event goes unseen and the answer is younger than half the max age: still cached.
        unseen = by_container(source.collect())[limited]
        skipped[0] += max_age
        expired = by_container(source.collect())[limited]
    finally:
        source.close()
    assert before.cpu_limit_millicores == unseen.cpu_limit_millicores == 500
    assert expired.cpu_limit_millicores == 250


@pytest.mark.integration
def test_restart_without_its_event_is_seen_from_the_cpu_counter(
    docker_api: Any, start_container: StartContainer
) -> None:
    burner = start_container("burner", BURN)
    source = caching_source(EngineProxy(new_api_client(), events_kwargs=BLIND_EVENTS))
    burned_ns = 3 * 10**9
    try:
        warmed_up(source)

        def burned_enough() -> ContainerSample | None:
            sample = by_container(source.collect())[burner]
            used = sample.cpu_usage_nanoseconds_total
            return sample if used is not None and used >= burned_ns else None

        before = wait_until(burned_enough, 120, "the burner never used 3 s of CPU")
        docker_api.restart(burner, timeout=0)
        started_again_ns = engine_started_ns(docker_api, burner)
        # The new incarnation cannot have used 3 s of CPU in the second or so before its first stats.
        after = by_container(source.collect())[burner]
    finally:
        source.close()
    assert before.started_at_ns is not None
    assert before.started_at_ns < started_again_ns
    assert after.started_at_ns == started_again_ns
    assert after.cpu_usage_nanoseconds_total is not None
    assert after.cpu_usage_nanoseconds_total < burned_ns


@pytest.mark.integration
def test_refused_event_stream_means_inspecting_every_scrape(start_container: StartContainer) -> None:
    fleet = [start_container(f"uncached{i}", SLEEP, cpu_quota=50_000) for i in range(2)]
    # The engine answers HTTP 500 to this ``since``; the SDK hands that back as a stream that ends at once.
    refused = {**BLIND_EVENTS, "since": "not-a-time"}
    engine = EngineProxy(new_api_client(), events_kwargs=refused)
    source = DockerSource(engine, node_name="test-node", concurrency=8, timeout_seconds=30)
    scrapes = 3
    try:
        seen = [source.collect() for _ in range(scrapes)]
    finally:
        source.close()
    for scrape in seen:
        for container_id in fleet:
            assert by_container(scrape)[container_id].cpu_limit_millicores == 500
    assert all(engine.inspected[c] == scrapes for c in fleet)
