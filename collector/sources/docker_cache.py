"""The Docker source's cache of inspect answers per container id, kept true by the engine's container events.

What the source reads from ``/containers/{id}/json`` (start time, restart count, limits) changes only when a
container starts again or is updated, and the engine announces both on ``/events``. ``EventWatcher`` follows
that stream in a daemon thread and drops the entry of every container an event names. Nothing is cached
while the stream is down (and everything is dropped when it goes down), so a lost stream costs requests,
never stale answers. As a safety net, because the engine drops events for a reader that falls behind, an
entry also expires ``max_age_seconds`` after it was read at the latest, and is dropped when the container's
CPU counter went backwards (a restart whose event has not arrived yet).

Usage::

    cache = InspectCache(max_age_seconds=300)
    watcher = EventWatcher(client, cache)
    watcher.start()
    inspect = cache.get(container_id, cpu_usage_ns)
    if inspect is None:
        token = cache.token()                      # before the request
        inspect = ContainerInspect.model_validate(client.inspect_container(container_id))
        cache.put(container_id, inspect, cpu_usage_ns, token)
    watcher.stop()
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterator
from typing import Any, Protocol

import requests
from docker.errors import DockerException

from collector.sources.docker_parse import ContainerEvent, ContainerInspect

log = logging.getLogger(__name__)

INVALIDATING_ACTIONS = ("start", "restart", "update")
"""Container events after which an inspect answer may be out of date (new start time, restart count,
limits). Labels cannot change without a new container id, and names are read from the listing."""


class EventStream(Protocol):
    """A streaming ``/events`` response (``docker.types.CancellableStream``)."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Decoded event messages, as they come."""
        ...

    def close(self) -> None:
        """End the stream from another thread."""
        ...


class EventSource(Protocol):
    """The part of ``docker.APIClient`` the watcher uses."""

    def events(self, *, decode: bool, filters: dict[str, Any]) -> EventStream:
        """Follow the engine's events (``/events``)."""
        ...


class _Entry:
    __slots__ = ("cpu_usage_ns", "expires_at", "inspect")

    def __init__(self, inspect: ContainerInspect, expires_at: float, cpu_usage_ns: int | None) -> None:
        self.inspect = inspect
        self.expires_at = expires_at
        self.cpu_usage_ns = cpu_usage_ns


class InspectCache:
    """Inspect answers by container id; safe to use from the source's worker threads and the watcher."""

    def __init__(self, *, max_age_seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        """Entries live at most ``max_age_seconds`` (seconds, on the ``monotonic`` clock)."""
        if max_age_seconds <= 0:
            raise ValueError(f"max_age_seconds must be positive, got {max_age_seconds}")
        self._max_age_seconds = max_age_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        # Bumped by every invalidation: an answer requested before one may predate the change it announced.
        self._generation = 0
        self._live = False

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, container_id: object) -> bool:
        return container_id in self._entries

    @property
    def live(self) -> bool:
        """Whether an event stream is following the engine (only then is anything cached)."""
        return self._live

    def token(self) -> int | None:
        """Take before requesting an inspect, hand to ``put``; ``None`` when nothing can be cached now."""
        with self._lock:
            return self._generation if self._live else None

    def get(self, container_id: str, cpu_usage_ns: int | None) -> ContainerInspect | None:
        """The cached answer, unless expired or the container's CPU counter (ns) went backwards."""
        with self._lock:
            entry = self._entries.get(container_id)
            if entry is None:
                return None
            previous_ns = entry.cpu_usage_ns
            restarted = cpu_usage_ns is not None and previous_ns is not None and cpu_usage_ns < previous_ns
            if restarted or self._monotonic() >= entry.expires_at:
                del self._entries[container_id]
                return None
            if cpu_usage_ns is not None:
                entry.cpu_usage_ns = cpu_usage_ns
            return entry.inspect

    def put(
        self, container_id: str, inspect: ContainerInspect, cpu_usage_ns: int | None, token: int | None
    ) -> None:
        """Keep an answer requested after ``token`` was taken, unless an event has arrived since."""
        with self._lock:
            if token is None or token != self._generation or not self._live:
                return
            # Spread over the last half of the age by id, so entries filled together do not expire together.
            spread = zlib.crc32(container_id.encode()) / 0x1_0000_0000
            lifetime = self._max_age_seconds * (1.0 - spread / 2)
            self._entries[container_id] = _Entry(inspect, self._monotonic() + lifetime, cpu_usage_ns)

    def invalidate(self, container_id: str) -> None:
        """Forget one container's answer (an event said it changed)."""
        with self._lock:
            self._generation += 1
            self._entries.pop(container_id, None)

    def set_live(self, live: bool) -> None:
        """An event stream started (``True``) or ended (``False``); either way, forget everything."""
        with self._lock:
            self._generation += 1
            self._live = live
            self._entries.clear()

    def retain(self, container_ids: Collection[str]) -> None:
        """Forget the containers not in ``container_ids`` (the engine no longer lists them)."""
        with self._lock:
            for gone in self._entries.keys() - set(container_ids):
                del self._entries[gone]


class EventWatcher:
    """Follows the engine's container events in a daemon thread and invalidates ``cache`` entries.

    A stream that cannot be opened or ends (engine restart) marks the cache not live and is opened again
    after a delay growing from ``retry_initial_seconds`` to ``retry_max_seconds``.
    """

    def __init__(
        self,
        client: EventSource,
        cache: InspectCache,
        *,
        retry_initial_seconds: float = 1.0,
        retry_max_seconds: float = 30.0,
    ) -> None:
        """Watch the engine behind ``client``; nothing happens before ``start()``."""
        self._client = client
        self._cache = cache
        self._retry_initial_seconds = retry_initial_seconds
        self._retry_max_seconds = retry_max_seconds
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._stream: EventStream | None = None
        self._thread: threading.Thread | None = None
        self._warned = False
        self.stream_failures = 0
        """Streams that could not be opened or ended while not stopping (cumulative)."""

    def start(self) -> None:
        """Start following the events (once; later calls do nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kpulse-docker-events", daemon=True)
            self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """End the stream and wait up to ``timeout_seconds`` for the thread."""
        self._stopping.set()
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            self._close(stream)
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def _run(self) -> None:
        delay = self._retry_initial_seconds
        while not self._stopping.is_set():
            started = time.monotonic()
            self._follow_once()
            # A stream that worked for a while ended with its engine (a restart): retry soon. One refused
            # or ended at once (the SDK turns an error answer into an empty stream) is retried less often.
            if time.monotonic() - started >= self._retry_max_seconds:
                delay = self._retry_initial_seconds
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self._retry_max_seconds)

    def _follow_once(self) -> None:
        """Open the stream and read it until it ends."""
        filters = {"type": "container", "event": list(INVALIDATING_ACTIONS)}
        try:
            stream = self._client.events(decode=True, filters=filters)
        except (DockerException, requests.RequestException, OSError) as exc:
            self._failed("cannot follow the engine's events", exc)
            return
        with self._lock:
            if self._stopping.is_set():
                self._close(stream)
                return
            self._stream = stream
        # Live only once the engine answered (it subscribes us as it answers): an inspect sent from now on
        # either already sees a change or is followed by the change's event.
        self._cache.set_live(True)
        try:
            for message in stream:
                container_id = ContainerEvent.model_validate(message).container_id
                if container_id:
                    self._cache.invalidate(container_id)
        except (DockerException, requests.RequestException, OSError, ValueError) as exc:
            if not self._stopping.is_set():
                self._failed("the engine's event stream broke", exc)
        else:
            if not self._stopping.is_set():
                self._failed("the engine's event stream ended", None)
        finally:
            self._cache.set_live(False)
            with self._lock:
                if self._stream is stream:
                    self._stream = None
            self._close(stream)

    def _failed(self, what: str, exc: BaseException | None) -> None:
        self.stream_failures += 1
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        # Formatted now: a record holding the exception would keep its traceback's sockets alive.
        cause = str(exc) if exc is not None else "no error"
        log.log(
            level, "docker: %s (%s); inspecting every container each scrape until it is back", what, cause
        )

    @staticmethod
    def _close(stream: EventStream) -> None:
        try:
            stream.close()
        except (DockerException, OSError):
            log.debug("docker: closing the event stream failed", exc_info=True)
