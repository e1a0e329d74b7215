"""InfluxDB 1.x HTTP API backend: line-protocol writes to ``/write``, InfluxQL through ``/query``.

One ``write_batch`` call is one ``POST /write?db=&rp=&precision=ns`` request, gzipped (level 1) unless
InfluxDB is on a loopback address. A missing database is created (``CREATE DATABASE``) and the write
repeated once. How an answer is classified:

* 2xx: stored.
* 400/413/422 and other 4xx: InfluxDB refused the data itself (unparsable, field type conflict, too
  large); sending it again cannot help, so the result carries the server's message and how many points were
  lost (a ``partial write`` stored the others).
* 401/403: credentials or privileges; an operator can fix them on the server (``GRANT``) without
  restarting us, so they are retried like an outage instead of throwing data away.
* 5xx, 408, 429, connection errors and timeouts: transient, ``SinkError`` (the writer retries with backoff).

Usage::

    backend = InfluxV1Backend(requests.Session(), url="http://127.0.0.1:8086", database="kpulse")
    backend.write_batch(points)
    backend.query('SELECT * FROM "container" LIMIT 1')
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from aggregator.errors import SinkError
from aggregator.points import Point
from aggregator.sinks.lineprotocol import rejected_points, to_lines
from aggregator.sinks.writer import WriteResult

log = logging.getLogger(__name__)

_RETRIED_CLIENT_STATUSES = frozenset({401, 403, 408, 429})
_GZIP_LEVEL = 1
"""kpulse's line protocol compresses 6.5:1 at level 1 for about 3 µs of CPU per point; level 5 gets 7.9:1
for 5.7 µs (measured on the benchmark's points). Over a network the bytes matter more than the ratio."""


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an InfluxQL answer: ``values`` are rows in ``columns`` order (time in ns by default)."""

    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """The values as one dict per row, keyed by column."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted InfluxQL identifier."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this host (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_message(response: requests.Response) -> str:
    """The error InfluxDB gave: its JSON ``error``, else its ``X-Influxdb-Error`` header, else the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        return str(body["error"])
    header = response.headers.get("X-Influxdb-Error")
    if header:
        return header
    text = response.text.strip()
    return text[:500] if text else f"HTTP {response.status_code} {response.reason}"


class InfluxV1Backend:
    """Writes and queries one InfluxDB 1.x database through a ``requests.Session`` it then owns.

    ``url`` is the server's base address (a path prefix behind a proxy is kept); ``timeout_seconds``
    bounds each request. ``compress`` gzips write bodies; by default only when InfluxDB is not on a
    loopback address: on the same host gzip costs both processes CPU (the writer about a third of its
    time per point) and saves no bandwidth worth having.
    """

    def __init__(
        self,
        session: requests.Session,
        *,
        url: str,
        database: str,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_seconds: float = 10.0,
        create_database: bool = True,
        compress: bool | None = None,
    ) -> None:
        self._session = session
        self._base = url.rstrip("/")
        self.database = database
        self._retention_policy = retention_policy
        self._auth = (username, password or "") if username else None
        self._timeout = timeout_seconds
        self._create_database = create_database
        self.compress = not is_loopback(url) if compress is None else compress

    # -- writing -------------------------------------------------------------------------------------

    def write_batch(self, points: Sequence[Point]) -> WriteResult:
        """Write ``points`` in one request; raises ``SinkError`` when a retry may succeed."""
        lines = to_lines(points)
        without_fields = len(points) - len(lines)
        if not lines:
            return WriteResult(len(points), len(points), "no point had a finite field value")
        body = self.encode_body(lines)
        response = self._post_write(body)
        if response.status_code == 404 and "database not found" in server_message(response):
            if not self._create_database:
                raise SinkError(
                    f"InfluxDB database {self.database!r} does not exist: {server_message(response)}"
                )
            self.create_database()
            response = self._post_write(body)
        result = self._classify(response, len(lines))
        if without_fields:
            note = f"{without_fields} points had no finite field value"
            message = f"{result.message}; {note}" if result.message else note
            return WriteResult(len(points), result.rejected + without_fields, message)
        return result

    def encode_body(self, lines: Sequence[str]) -> bytes:
        """The request body for ``lines``: newline-joined UTF-8, gzipped when ``compress`` is on."""
        body = "\n".join(lines).encode()
        return gzip.compress(body, compresslevel=_GZIP_LEVEL) if self.compress else body

    def _post_write(self, body: bytes) -> requests.Response:
        params = {"db": self.database, "precision": "ns"}
        if self._retention_policy:
            params["rp"] = self._retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.compress:
            headers["Content-Encoding"] = "gzip"
        try:
            return self._session.post(
                f"{self._base}/write",
                params=params,
                data=body,
                headers=headers,
                auth=self._auth,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise SinkError(f"InfluxDB at {self._base} unreachable: {exc}") from exc

    def _classify(self, response: requests.Response, sent: int) -> WriteResult:
        status = response.status_code
        if 200 <= status < 300:
            return WriteResult(sent)
        message = server_message(response)
        if status >= 500 or status in _RETRIED_CLIENT_STATUSES:
            raise SinkError(f"InfluxDB write failed with HTTP {status}: {message}")
        if status == 404:
            # Not "database not found": a wrong URL or a proxy in the way; fixable, so keep the data.
            raise SinkError(f"InfluxDB write endpoint {self._base}/write answered 404: {message}")
        return WriteResult(sent, rejected_points(message, sent), f"HTTP {status}: {message}")

    def create_database(self) -> None:
        """Create the database (a no-op when it exists); raises ``SinkError`` when InfluxDB refuses."""
        log.info("creating InfluxDB database %s", self.database)
        self._query(f"CREATE DATABASE {quote_identifier(self.database)}", database=None)

    # -- reading -------------------------------------------------------------------------------------

    def query(
        self,
        influxql: str,
        *,
        database: str | None = None,
        epoch: str = "ns",
        params: Mapping[str, Any] | None = None,
    ) -> list[Series]:
        """Run InfluxQL (``params`` bound as ``$name``) and return every series; times in ``epoch`` units.

        ``database`` defaults to this backend's. Raises ``SinkError`` with InfluxDB's message on failure.
        """
        return self._query(influxql, database=database or self.database, epoch=epoch, params=params)

    def _query(
        self,
        influxql: str,
        *,
        database: str | None,
        epoch: str = "ns",
        params: Mapping[str, Any] | None = None,
    ) -> list[Series]:
        form: dict[str, str] = {"q": influxql, "epoch": epoch}
        if database is not None:
            form["db"] = database
        if params:
            form["params"] = json.dumps(dict(params))
        try:
            response = self._session.post(
                f"{self._base}/query", data=form, auth=self._auth, timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise SinkError(f"InfluxDB at {self._base} unreachable: {exc}") from exc
        if response.status_code >= 300:
            raise SinkError(
                f"InfluxDB query failed with HTTP {response.status_code}: {server_message(response)}"
            )
        series: list[Series] = []
        for result in response.json().get("results", []):
            if "error" in result:
                raise SinkError(f"InfluxDB query failed: {result['error']}")
            for raw in result.get("series", []):
                series.append(
                    Series(
                        name=raw.get("name", ""),
                        columns=list(raw.get("columns", [])),
                        values=[list(row) for row in raw.get("values", [])],
                        tags=dict(raw.get("tags") or {}),
                    )
                )
        return series

    def ping(self) -> None:
        """Return when ``/ping`` answers 204; raises ``SinkError`` otherwise."""
        try:
            response = self._session.get(f"{self._base}/ping", timeout=min(self._timeout, 5.0))
        except requests.RequestException as exc:
            raise SinkError(f"InfluxDB at {self._base} unreachable: {exc}") from exc
        if response.status_code != 204:
            raise SinkError(
                f"InfluxDB /ping answered HTTP {response.status_code}: {server_message(response)}"
            )

    def close(self) -> None:
        """Close the session."""
        self._session.close()
