"""The Docker source's engine client: docker-py's low-level ``APIClient``, with the stats call made cheap.

A scrape asks every container for one-shot stats, so that one call dominates the collector's CPU. Through
``APIClient.stats`` each call builds and merges a ``requests`` request, looks up proxies and .netrc, and opens
a new Unix-socket connection (docker-py keys its pools by URL, and each container has its own). Here the
connections to a Unix socket share one pool, proxy lookups are off for it, each container's stats request
is prepared once and sent again every scrape, and the answer is decoded with orjson. Every other call goes
to the SDK unchanged.

Usage::

    client = EngineClient(docker.APIClient(version="auto", timeout=8), pool_size=66)
    client.containers()                                    # also forgets requests of containers gone
    client.stats(container_id, stream=False, one_shot=True)  # decoded JSON, or docker.errors.APIError
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import quote

import orjson
import requests
from docker.errors import create_api_error_from_http_exception
from docker.transport import UnixHTTPAdapter

from collector.sources.docker_cache import EventStream

_UNIX_PREFIX = "http+docker://"
"""The scheme docker-py mounts its Unix-socket adapter on."""


class _OnePoolUnixAdapter(UnixHTTPAdapter):  # type: ignore[misc]  # docker-py is untyped
    """docker-py's Unix-socket adapter with one connection pool for the socket instead of one per URL."""

    def get_connection(self, url: str, proxies: Any = None) -> Any:
        return super().get_connection(self.socket_path, proxies)


def _reuse_unix_connections(api: Any, pool_size: int) -> bool:
    """Make ``api`` keep up to ``pool_size`` connections open to its Unix socket; ``False`` if it has none."""
    adapter = api.adapters.get(_UNIX_PREFIX)
    if not isinstance(adapter, UnixHTTPAdapter):
        return False  # TCP, TLS or SSH: the SDK already keys those pools by host
    api.mount(
        _UNIX_PREFIX,
        _OnePoolUnixAdapter(f"http+unix://{adapter.socket_path}", adapter.timeout, max_pool_size=pool_size),
    )
    adapter.close()
    # Proxies and .netrc never apply to a Unix socket, but requests would look them up on every call.
    api.trust_env = False
    return True


class EngineClient:
    """The ``DockerEngine`` the source is handed in production; thread-safe like ``docker.APIClient``."""

    def __init__(self, api: Any, *, pool_size: int) -> None:
        """Wrap ``api`` (a ``docker.APIClient``); ``pool_size`` connections at most stay open to a socket."""
        self._api = api
        self.base_url: str = api.base_url
        _reuse_unix_connections(api, pool_size)
        self._stats_prefix = f"{api.base_url}/v{api.api_version}/containers/"
        self._lock = threading.Lock()
        self._stats_requests: dict[str, requests.PreparedRequest] = {}

    def containers(self) -> list[dict[str, Any]]:
        """Running containers (``/containers/json``)."""
        listed: list[dict[str, Any]] = self._api.containers()
        listed_ids = {entry.get("Id") for entry in listed}
        with self._lock:
            for gone in self._stats_requests.keys() - listed_ids:
                del self._stats_requests[gone]
        return listed

    def inspect_container(self, container: str) -> dict[str, Any]:
        """One container's configuration and state (``/containers/{id}/json``)."""
        inspected: dict[str, Any] = self._api.inspect_container(container)
        return inspected

    def stats(self, container: str, *, stream: bool, one_shot: bool) -> dict[str, Any]:
        """One container's counters (``/containers/{id}/stats``); raises ``APIError`` as the SDK does."""
        if stream or not one_shot:
            return self._api.stats(container, stream=stream, one_shot=one_shot)  # type: ignore[no-any-return]
        with self._lock:
            request = self._stats_requests.get(container)
        if request is None:
            url = f"{self._stats_prefix}{quote(container, safe='')}/stats?stream=false&one-shot=true"
            request = self._api.prepare_request(requests.Request("GET", url))
            with self._lock:
                self._stats_requests[container] = request
        response = self._api.send(request, timeout=self._api.timeout, allow_redirects=False)
        try:
            response.raise_for_status()
        except requests.HTTPError as exc:
            raise create_api_error_from_http_exception(exc) from exc
        return _decode(response.content)

    def info(self) -> dict[str, Any]:
        """The engine and its host (``/info``)."""
        info: dict[str, Any] = self._api.info()
        return info

    def events(self, *, decode: bool, filters: dict[str, Any]) -> EventStream:
        """Follow the engine's events (``/events``)."""
        stream: EventStream = self._api.events(decode=decode, filters=filters)
        return stream

    def close(self) -> None:
        """Close every connection."""
        self._api.close()


def _decode(body: bytes) -> dict[str, Any]:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses integers beyond 64 bits, which JSON allows; the standard library takes them.
        decoded = json.loads(body)
    if not isinstance(decoded, dict):
        raise ValueError(f"expected a JSON object, got {type(decoded).__name__}")
    return decoded
