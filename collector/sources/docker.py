"""The Docker source: reads every running container of the local engine once per scrape, concurrently.

The engine answers each ``/containers/{id}/stats`` call about a second late (it waits for its next
collection tick), so the calls for all containers run at once in a bounded thread pool that the source owns
and reuses, under one per-scrape deadline. A container's inspect answer is cached until an engine event
says it changed (``docker_cache``), so a scrape costs one request per container. One container that
vanishes, answers late or sends a bad payload is skipped and counted; only an engine that cannot be listed
at all fails the scrape (``SourceError``).

Usage::

    source = DockerSource.from_settings(get_settings())
    scrape = source.collect()   # Scrape(containers=[...], pods=[...], node=NodeSample(...) or None)
    source.close()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import docker
import requests
from docker.errors import APIError, DockerException

from collector.errors import SourceAuthError, SourceError
from collector.sources import Scrape, SourceName
from collector.sources.docker_cache import EventSource, EventWatcher, InspectCache
from collector.sources.docker_client import EngineClient
from collector.sources.docker_parse import (
    ContainerInspect,
    ContainerListEntry,
    ContainerStats,
    EngineInfo,
    Samples,
    container_name,
    parse_stats,
    samples_from_reading,
)
from collector.sources.node import read_node_sample
from collector.wire import ContainerSample, NodeSample, PodSample

if TYPE_CHECKING:
    from collector.settings import CollectorSettings

log = logging.getLogger(__name__)

MIN_API_VERSION = "1.41"
"""The first Engine API version with one-shot stats; older engines would make every call wait ~2 s."""

_HTTP_NOT_FOUND = 404
_HTTP_CONFLICT = 409
_AUTH_STATUSES = (401, 403)


class DockerEngine(EventSource, Protocol):
    """The part of ``docker.APIClient`` the source uses (the low-level client, answers are decoded JSON)."""

    def containers(self) -> list[dict[str, Any]]:
        """Running containers (``/containers/json``)."""
        ...

    def inspect_container(self, container: str) -> dict[str, Any]:
        """One container's configuration and state (``/containers/{id}/json``)."""
        ...

    def stats(self, container: str, *, stream: bool, one_shot: bool) -> dict[str, Any]:
        """One container's counters (``/containers/{id}/stats``)."""
        ...

    def info(self) -> dict[str, Any]:
        """The engine and its host (``/info``)."""
        ...

    def close(self) -> None:
        """Close the connection pool."""
        ...


class _ContainerGoneError(Exception):
    """The container stopped or was removed between the listing and its stats."""


class DockerSource:
    """Reads the containers of one Docker engine; ``collect()`` is called by one thread at a time."""

    name: SourceName = "docker"

    def __init__(
        self,
        client: DockerEngine,
        *,
        node_name: str,
        default_namespace: str = "default",
        concurrency: int = 64,
        timeout_seconds: float = 8.0,
        host_memory_bytes: int | None = None,
        proc_path: Path | None = None,
        engine_url: str | None = None,
        inspect_max_age_seconds: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Read the engine behind ``client``; ``timeout_seconds`` is the per-scrape deadline.

        ``host_memory_bytes`` is the engine host's RAM (asked from ``/info`` when ``None``): it is how an
        unlimited container's reported "limit" is recognised. ``proc_path`` adds the node's own usage.
        A cached inspect answer is used for at most ``inspect_max_age_seconds`` (events end it sooner).
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self.inspect_cache = InspectCache(max_age_seconds=inspect_max_age_seconds, monotonic=monotonic)
        """Inspect answers by container id (read it in tests; the source owns it)."""
        self._client = client
        self._node_name = node_name
        self._default_namespace = default_namespace
        self._timeout_seconds = timeout_seconds
        self._host_memory_bytes = host_memory_bytes
        self._proc_path = proc_path
        self._engine_url = engine_url or str(getattr(client, "base_url", "the Docker engine"))
        self._monotonic = monotonic
        self._wall_clock_ns = wall_clock_ns
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kpulse-docker")
        self._watcher = EventWatcher(client, self.inspect_cache)
        # Containers already warned about: a container that keeps sending a bad payload is logged once.
        self._warned_ids: set[str] = set()
        self._warned_timeout = False
        self._warned_node = False

        self.skipped_timeout = 0
        """Containers not answered before the scrape's deadline (cumulative)."""
        self.skipped_gone = 0
        """Containers that stopped or were removed between the listing and their stats (cumulative)."""
        self.parse_errors = 0
        """Payloads that could not be parsed (cumulative)."""
        self.fetch_errors = 0
        """Per-container calls the engine failed otherwise, e.g. a 500 (cumulative)."""

    @classmethod
    def from_settings(cls, settings: CollectorSettings) -> DockerSource:
        """A source for the engine named by the settings (or ``DOCKER_HOST``, or the local socket)."""
        client_kwargs: dict[str, Any] = docker.utils.kwargs_from_env()
        if settings.docker_url:
            client_kwargs["base_url"] = settings.docker_url
        engine_url = str(client_kwargs.get("base_url") or "unix:///var/run/docker.sock")
        timeout = settings.effective_scrape_timeout_seconds
        try:
            # version="auto" asks the engine which API it speaks, so old and new engines both work.
            client = docker.APIClient(
                version="auto", timeout=timeout, max_pool_size=settings.docker_concurrency, **client_kwargs
            )
        except DockerException as exc:
            raise SourceError(f"docker: cannot reach the engine at {engine_url}: {exc}") from exc
        if docker.utils.version_lt(client.api_version, MIN_API_VERSION):
            client.close()
            raise SourceError(
                f"docker: the engine at {engine_url} speaks API {client.api_version}; kpulse needs "
                f">= {MIN_API_VERSION} (one-shot stats)"
            )
        return cls(
            # The workers, the listing and the event stream may all hold a connection at once.
            EngineClient(client, pool_size=settings.docker_concurrency + 2),
            node_name=settings.node_name,
            default_namespace=settings.default_namespace,
            concurrency=settings.docker_concurrency,
            timeout_seconds=timeout,
            proc_path=settings.proc_path,
            engine_url=engine_url,
            inspect_max_age_seconds=settings.docker_inspect_max_age_seconds,
        )

    def collect(self) -> Scrape:
        """Read every running container once; raises ``SourceError`` only when the engine is unreachable."""
        deadline = self._monotonic() + self._timeout_seconds
        entries = self._list_containers()
        self._watcher.start()  # once the engine answered, so an unreachable one costs no thread
        self.inspect_cache.retain({entry.id for entry in entries})
        host_memory_bytes = self._host_memory()

        futures: dict[Future[Samples], ContainerListEntry] = {
            self._pool.submit(self._read_container, entry, host_memory_bytes): entry for entry in entries
        }
        wait(futures, timeout=max(deadline - self._monotonic(), 0.0))

        containers: list[ContainerSample] = []
        pods: list[PodSample] = []
        late: list[str] = []
        for future, entry in futures.items():  # in listing order, so scrapes are reproducible
            if not future.done():
                # A late call keeps its worker until the HTTP timeout; its answer is dropped.
                future.cancel()
                late.append(container_name(entry))
                continue
            samples = self._outcome(future, entry)
            if samples is not None:
                if samples.container is not None:
                    containers.append(samples.container)
                if samples.pod is not None:
                    pods.append(samples.pod)

        if late:
            self.skipped_timeout += len(late)
            self._log_late(late)
        self._warned_ids &= {entry.id for entry in entries}
        return Scrape(containers=containers, pods=pods, node=self._node_sample())

    def close(self) -> None:
        """Stop the worker threads (without waiting for late calls) and close the engine connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._watcher.stop()
        self._client.close()

    # --- internals ----------------------------------------------------------------------------------------

    def _list_containers(self) -> list[ContainerListEntry]:
        try:
            raw_entries = self._client.containers()
        except APIError as exc:
            error = SourceAuthError if exc.status_code in _AUTH_STATUSES else SourceError
            raise error(
                f"docker: the engine at {self._engine_url} refused to list containers: {exc}",
                cause="unauthorized" if error is SourceAuthError else "refused",
            ) from exc
        except (DockerException, requests.RequestException, OSError) as exc:
            raise SourceError(
                f"docker: cannot reach the engine at {self._engine_url}: {exc}", cause="connection"
            ) from exc
        entries: list[ContainerListEntry] = []
        for raw in raw_entries:
            try:
                entries.append(ContainerListEntry.model_validate(raw))
            except ValueError as exc:
                self.parse_errors += 1
                log.warning("docker: skipping a container list entry that cannot be parsed: %s", exc)
        return entries

    def _host_memory(self) -> int | None:
        if self._host_memory_bytes is None:
            try:
                self._host_memory_bytes = EngineInfo.model_validate(self._client.info()).mem_total
            except (DockerException, requests.RequestException, OSError, ValueError) as exc:
                # Only limits suffer (none is claimed from stats alone); asked again next scrape.
                log.warning("docker: cannot read the engine host's memory from /info: %s", exc)
        return self._host_memory_bytes

    def _read_container(self, entry: ContainerListEntry, host_memory_bytes: int | None) -> Samples:
        """Runs in a worker: one-shot stats, inspect unless cached, and the pure mapping to samples."""
        stats = ContainerStats.model_validate(self._client.stats(entry.id, stream=False, one_shot=True))
        reading = parse_stats(stats)
        if reading is None:
            raise _ContainerGoneError
        # Looked up after the stats call, which waits for the engine's next tick: the event of a restart
        # these stats already show has had that long to arrive and drop the entry.
        inspect = self.inspect_cache.get(entry.id, reading.cpu_usage_ns)
        if inspect is None:
            token = self.inspect_cache.token()
            inspect = ContainerInspect.model_validate(self._client.inspect_container(entry.id))
            self.inspect_cache.put(entry.id, inspect, reading.cpu_usage_ns, token)
        return samples_from_reading(
            entry,
            inspect,
            reading,
            default_namespace=self._default_namespace,
            host_memory_bytes=host_memory_bytes,
        )

    def _outcome(self, future: Future[Samples], entry: ContainerListEntry) -> Samples | None:
        """The samples of a finished call, or ``None`` after counting and logging why there are none."""
        name = container_name(entry)
        exc = future.exception()
        if exc is None:
            return future.result()
        if isinstance(exc, _ContainerGoneError) or (
            isinstance(exc, APIError) and exc.status_code in (_HTTP_NOT_FOUND, _HTTP_CONFLICT)
        ):
            # Containers come and go between the listing and their stats; that is normal, not news.
            self.skipped_gone += 1
            log.debug("docker: container %s (%s) is gone, skipped", name, entry.id[:12])
        elif isinstance(exc, requests.Timeout):
            self.skipped_timeout += 1
            log.debug("docker: container %s (%s) timed out: %s", name, entry.id[:12], exc)
        elif isinstance(exc, ValueError):
            self.parse_errors += 1
            self._warn_once(entry.id, "docker: cannot parse the payload of container %s (%s): %s", name, exc)
        elif isinstance(exc, DockerException | requests.RequestException | OSError):
            self.fetch_errors += 1
            self._warn_once(entry.id, "docker: cannot read container %s (%s): %s", name, exc)
        else:
            raise exc  # a bug in kpulse, not a container problem: let it be seen
        return None

    def _warn_once(self, container_id: str, message: str, name: str, exc: BaseException) -> None:
        level = logging.DEBUG if container_id in self._warned_ids else logging.WARNING
        self._warned_ids.add(container_id)
        log.log(level, message, name, container_id[:12], exc)

    def _log_late(self, late: list[str]) -> None:
        level = logging.DEBUG if self._warned_timeout else logging.WARNING
        self._warned_timeout = True
        log.log(
            level,
            "docker: %d container(s) not answered within %.1f s on node %s, skipped this scrape: %s "
            "(counted in skipped_timeout; further occurrences are logged at debug)",
            len(late),
            self._timeout_seconds,
            self._node_name,
            ", ".join(sorted(late)[:10]),
        )

    def _node_sample(self) -> NodeSample | None:
        if self._proc_path is None:
            return None
        try:
            return read_node_sample(self._proc_path, now_ns=self._wall_clock_ns())
        except (OSError, ValueError) as exc:
            level = logging.DEBUG if self._warned_node else logging.WARNING
            self._warned_node = True
            log.log(level, "docker: cannot read the node's usage from %s: %s", self._proc_path, exc)
            return None
