"""The inspect cache (recorded answers, a handed-in clock) and the event watcher on the engine."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import docker
import pytest

from collector.sources.docker_cache import EventWatcher, InspectCache
from collector.sources.docker_parse import ContainerInspect
from tests.collector.sources.conftest import StartContainer, new_api_client, sdk_socket_leak_tolerated
from tests.helpers import wait_until

OWN_V1 = Path(__file__).parents[2] / "fixtures" / "docker" / "engine-20.10.24-cgroupv1-kpulse"
SLEEP = ["sleep", "100000"]
MAX_AGE = 300.0


def recorded(name: str) -> ContainerInspect:
    return ContainerInspect.model_validate(json.loads((OWN_V1 / f"inspect-{name}.json").read_text()))


BUSY, IDLE = recorded("busy"), recorded("idle")


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def live_cache(clock: Clock | None = None) -> InspectCache:
    cache = InspectCache(max_age_seconds=MAX_AGE, monotonic=clock or Clock())
    cache.set_live(True)
    return cache


def cached(cache: InspectCache, inspect: ContainerInspect, cpu_usage_ns: int | None = 10) -> None:
    cache.put(inspect.id, inspect, cpu_usage_ns, cache.token())


# --- the cache --------------------------------------------------------------------------------------------


def test_nothing_is_cached_while_no_event_stream_is_live() -> None:
    cache = InspectCache(max_age_seconds=MAX_AGE)
    assert cache.token() is None
    cache.put(BUSY.id, BUSY, 10, cache.token())
    assert cache.get(BUSY.id, 10) is None
    assert len(cache) == 0


def test_an_answer_is_kept_until_an_event_names_its_container() -> None:
    cache = live_cache()
    cached(cache, BUSY)
    cached(cache, IDLE)
    assert cache.get(BUSY.id, 20) is BUSY
    assert cache.get(BUSY.id, 30) is BUSY
    cache.invalidate(BUSY.id)
    assert cache.get(BUSY.id, 40) is None
    assert cache.get(IDLE.id, 40) is IDLE  # only the container the event named


def test_an_answer_requested_before_an_event_about_it_is_not_kept() -> None:
    cache = live_cache()
    token = cache.token()  # the inspect request goes out...
    cache.invalidate(BUSY.id)  # ...the container is updated while it is in flight...
    cache.put(BUSY.id, BUSY, 10, token)  # ...and the answer may predate the update
    assert cache.get(BUSY.id, 10) is None


def test_answers_expire_within_the_max_age() -> None:
    clock = Clock()
    cache = live_cache(clock)
    cached(cache, BUSY)
    cached(cache, IDLE)
    # Each entry lives between half the max age and the max age (spread by container id).
    clock.now += MAX_AGE / 2 - 0.001
    assert cache.get(BUSY.id, 10) is BUSY
    assert cache.get(IDLE.id, 10) is IDLE
    clock.now += MAX_AGE / 2
    assert cache.get(BUSY.id, 10) is None
    assert cache.get(IDLE.id, 10) is None


def test_a_cpu_counter_going_backwards_drops_the_answer() -> None:
    cache = live_cache()
    cached(cache, BUSY, cpu_usage_ns=5_000)
    assert cache.get(BUSY.id, 7_000) is BUSY
    assert cache.get(BUSY.id, None) is BUSY  # no counter this time: nothing to compare
    # Compared with the last counter seen (7,000), not the one at caching time.
    assert cache.get(BUSY.id, 6_000) is None


def test_containers_no_longer_listed_are_forgotten() -> None:
    cache = live_cache()
    cached(cache, BUSY)
    cached(cache, IDLE)
    cache.retain({IDLE.id, "some-other-id"})
    assert BUSY.id not in cache
    assert IDLE.id in cache


def test_a_stream_going_down_forgets_everything_and_refuses_answers_in_flight() -> None:
    cache = live_cache()
    cached(cache, BUSY)
    token = cache.token()
    cache.set_live(False)
    assert len(cache) == 0
    cache.put(IDLE.id, IDLE, 10, token)
    assert len(cache) == 0


def test_a_nonsense_max_age_is_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        InspectCache(max_age_seconds=0)


# --- the watcher, on the real engine ----------------------------------------------------------------------


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kpulse-docker-events"]


@pytest.mark.integration
def test_an_update_event_drops_that_containers_answer(
    docker_api: Any, start_container: StartContainer
) -> None:
    updated = start_container("updated", SLEEP, cpu_quota=50_000)
    untouched = start_container("untouched", SLEEP)
    client = new_api_client()
    cache = InspectCache(max_age_seconds=MAX_AGE)
    watcher = EventWatcher(client, cache)
    try:
        watcher.start()
        wait_until(lambda: cache.live, 10, "the event stream never went live")
        for container_id in (updated, untouched):
            answer = ContainerInspect.model_validate(docker_api.inspect_container(container_id))
            cache.put(container_id, answer, None, cache.token())
        assert updated in cache
        assert untouched in cache

        docker_api.update_container(updated, cpu_quota=25_000)
        wait_until(lambda: updated not in cache, 10, "the update event never dropped the cached answer")
        assert untouched in cache
        assert watcher.stream_failures == 0
    finally:
        watcher.stop()
        client.close()
    assert not cache.live
    assert not watcher_threads()


@pytest.mark.integration
def test_an_event_stream_the_engine_refuses_keeps_the_cache_off() -> None:
    client = new_api_client()

    class RefusingEngine:
        """The real engine, asked for events with a ``since`` it rejects (it answers HTTP 500)."""

        def events(self, *, decode: bool, filters: dict[str, Any]) -> Any:
            return client.events(decode=decode, filters=filters, since="not-a-time")

    cache = InspectCache(max_age_seconds=MAX_AGE)
    watcher = EventWatcher(RefusingEngine(), cache, retry_initial_seconds=60, retry_max_seconds=60)
    try:
        watcher.start()
        wait_until(lambda: watcher.stream_failures >= 1, 10, "the refused stream was never noticed")
        # Waiting a minute before the next try: the cache stays off the whole time.
        assert cache.token() is None
        cache.put(IDLE.id, IDLE, 10, cache.token())
        assert len(cache) == 0
    finally:
        watcher.stop()
        client.close()
    assert not watcher_threads()


def test_an_unreachable_engine_keeps_the_cache_off(tmp_path: Path) -> None:
    client = docker.APIClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41", timeout=5)
    cache = InspectCache(max_age_seconds=MAX_AGE)
    watcher = EventWatcher(client, cache, retry_initial_seconds=60, retry_max_seconds=60)
    with sdk_socket_leak_tolerated():
        try:
            watcher.start()
            wait_until(lambda: watcher.stream_failures >= 1, 10, "the unreachable engine was never noticed")
            assert cache.token() is None
        finally:
            watcher.stop()
            client.close()
    assert not watcher_threads()
