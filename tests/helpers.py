"""Small test helpers shared across the suite: polling with a deadline, InfluxDB v1 queries, test containers.

Usage::

    wait_until(lambda: server.ready(), 10, "server never became ready")
    influx = InfluxV1("http://127.0.0.1:8086", "kpt_e2e_1a2b3c4d")
    rows = influx.rows('SELECT cpu_usage_millicores FROM container')
    containers = LabelledContainers(docker_client, "kpulse-test/busybox:latest")
    burner = containers.run("burner", ["sh", "-c", "while :; do :; done"])
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests
from docker.models.containers import Container

T = TypeVar("T")

TEST_LABEL = "kpulse.test"
"""Every container the tests start carries ``kpulse.test=1``."""
OWNER_LABEL = "kpulse.test.owner"
"""``<pid>:<process start time>`` of the pytest process that started the container."""
TEST_NAME_PREFIX = "kpt-"


def wait_until(
    predicate: Callable[[], T],
    timeout_seconds: float,
    message: str | Callable[[], str],
    *,
    every_seconds: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail at the deadline.

    ``message`` may be a callable, evaluated only on failure, to report the last state seen. The
    predicate may raise ``AssertionError`` to give up early (a process it waits for has died).
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout_seconds:g}s)")
        time.sleep(every_seconds)  # polling interval, not synchronisation: the predicate decides


def stop_process(process: subprocess.Popen[bytes], deadline_seconds: float) -> int:
    """SIGTERM, then SIGKILL if it has not exited within ``deadline_seconds``; returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(deadline_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 200) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class InfluxError(RuntimeError):
    """InfluxDB answered a query with an error (the server's message is the exception's text)."""


@dataclass(frozen=True, slots=True)
class Series:
    """One InfluxQL result series: ``name`` (measurement), its GROUP BY ``tags``, and rows as dicts."""

    name: str
    tags: dict[str, str]
    rows: list[dict[str, Any]]


class InfluxV1:
    """A minimal InfluxDB 1.x HTTP client for tests (``/query`` only; writes are the pipeline's job)."""

    def __init__(self, url: str, database: str | None = None, *, timeout_seconds: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self._timeout = timeout_seconds
        self._session = requests.Session()

    def ping(self) -> bool:
        """``True`` when the server answers /ping."""
        try:
            return self._session.get(f"{self.url}/ping", timeout=2).status_code == 204
        except requests.RequestException:
            return False

    def execute(self, statement: str) -> None:
        """Run a statement that changes something (CREATE/DROP DATABASE): POST, as InfluxDB requires."""
        self._request("post", statement, database=None)

    def series(self, query: str) -> list[Series]:
        """Every series the (single) query returned, in order; an empty list when nothing matched."""
        results = self._request("get", query, database=self.database)
        found: list[Series] = []
        for result in results:
            for raw in result.get("series", []):
                columns = raw["columns"]
                found.append(
                    Series(
                        name=raw.get("name", ""),
                        tags=raw.get("tags", {}),
                        rows=[dict(zip(columns, values, strict=True)) for values in raw.get("values", [])],
                    )
                )
        return found

    def rows(self, query: str) -> list[dict[str, Any]]:
        """The rows of every series the query returned, each with its series' GROUP BY tags merged in."""
        return [{**series.tags, **row} for series in self.series(query) for row in series.rows]

    def _request(self, method: str, query: str, *, database: str | None) -> list[dict[str, Any]]:
        params = {"q": query, "epoch": "ns"}
        if database is not None:
            params["db"] = database
        response = self._session.request(method, f"{self.url}/query", params=params, timeout=self._timeout)
        try:
            body = response.json()
        except ValueError:
            raise InfluxError(f"{query!r}: HTTP {response.status_code}: {response.text[:500]}") from None
        if response.status_code != 200 or "error" in body:
            raise InfluxError(f"{query!r}: HTTP {response.status_code}: {body.get('error', body)}")
        results: list[dict[str, Any]] = body.get("results", [])
        for result in results:
            if "error" in result:
                raise InfluxError(f"{query!r}: {result['error']}")
        return results


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxDatabases:
    """Makes uniquely named InfluxDB databases (``kpt_<prefix>_<random>``) and drops them all at the end."""

    def __init__(self, url: str) -> None:
        self._admin = InfluxV1(url)
        self.created: list[str] = []

    def create(self, prefix: str) -> str:
        """Create a fresh database and return its name."""
        name = f"kpt_{prefix}_{secrets.token_hex(4)}"
        self._admin.execute(f"CREATE DATABASE {quote_ident(name)}")
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        """Drop every database made here."""
        while self.created:
            self._admin.execute(f"DROP DATABASE {quote_ident(self.created.pop())}")


def _process_start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counted after the ")" that closes the command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def owner_token() -> str:
    """Identifies this test process across pid reuse: ``<pid>:<start time in clock ticks since boot>``."""
    pid = os.getpid()
    return f"{pid}:{_process_start_ticks(pid)}"


def _owner_alive(token: str) -> bool:
    pid_text, _, ticks = token.partition(":")
    if not pid_text.isdigit():
        return False
    return _process_start_ticks(int(pid_text)) == ticks


def remove_leftover_containers(client: docker.DockerClient) -> list[str]:
    """Remove test containers that a test process which no longer runs left behind; returns their names.

    Containers of a test run still in progress (this one or a colleague's on the same engine) are kept.
    """
    removed = []
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}=1"}):
        owner = container.labels.get(OWNER_LABEL)
        orphaned = not _owner_alive(owner) if owner else container.status != "running"
        if orphaned:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                continue
            removed.append(container.name)
    return removed


class LabelledContainers:
    """Starts test containers (named ``kpt-<hint>-<random>``, labelled ``kpulse.test=1``); removes them all.

    Names never collide between runs, and ``remove_all`` removes in reverse order of start, so containers
    that joined another's network namespace go before it.
    """

    def __init__(self, client: docker.DockerClient, image: str) -> None:
        self._client = client
        self._image = image
        self._owner = owner_token()
        self.started: list[Container] = []

    def run(
        self, hint: str, command: list[str], *, labels: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Container:
        """Start a detached container from the test image; ``kwargs`` go to ``containers.run``."""
        name = f"{TEST_NAME_PREFIX}{hint}-{secrets.token_hex(4)}"
        all_labels = {**(labels or {}), TEST_LABEL: "1", OWNER_LABEL: self._owner}
        container: Container = self._client.containers.run(
            self._image, command, name=name, labels=all_labels, detach=True, **kwargs
        )
        self.started.append(container)
        return container

    def remove_all(self) -> None:
        """Force-remove every container started here (already gone is fine)."""
        while self.started:
            container = self.started.pop()
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
