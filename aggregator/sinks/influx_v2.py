"""InfluxDB 2.x backend: line protocol through influxdb-client's synchronous write API (token, org, bucket).

Answers are classified as by the v1 backend: 4xx other than 401/403/408/429 means InfluxDB refused the data
(the result carries its message and how many points were lost); everything else that fails is a transient
``SinkError`` that the writer retries. influxdb-client's own retries stay off so that retrying, and the
order it keeps, is decided in one place (the writer core, ``writer.py``).

Usage::

    backend = InfluxV2Backend(url="http://influxdb:8086", token="...", org="ops", bucket="kpulse")
    backend.write_batch(points)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import urllib3.exceptions
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteApi
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from aggregator.errors import SinkError
from aggregator.points import Point
from aggregator.sinks.lineprotocol import rejected_points, to_lines
from aggregator.sinks.writer import WriteResult

_NS = cast(WritePrecision, WritePrecision.NS)  # the library declares its constants as plain str

_RETRIED_CLIENT_STATUSES = frozenset({401, 403, 404, 408, 429})
"""404 in v2 is a missing bucket or org: an operator creates it, so the data is kept until then."""


def api_message(exc: ApiException) -> str:
    """InfluxDB's own words from an ``ApiException`` (its JSON ``message``, else the body or reason)."""
    message: Any = getattr(exc, "message", None)
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    if message:
        return str(message)
    return f"HTTP {exc.status} {exc.reason}"


class InfluxV2Backend:
    """Writes to one bucket of an InfluxDB 2.x server; ``timeout_seconds`` bounds each request."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        org: str,
        bucket: str,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.bucket = bucket
        self._org = org
        self._url = url.rstrip("/")
        self._client = InfluxDBClient(
            url=self._url, token=token, org=org, timeout=int(timeout_seconds * 1000), enable_gzip=True
        )
        self._write_api: WriteApi = self._client.write_api(write_options=SYNCHRONOUS)
        # Both close() methods are unannotated in the library; held as plain callables.
        self._closers: tuple[Callable[[], object], ...] = (self._write_api.close, self._client.close)

    def write_batch(self, points: Sequence[Point]) -> WriteResult:
        """Write ``points`` in one request; raises ``SinkError`` when a retry may succeed."""
        lines = to_lines(points)
        without_fields = len(points) - len(lines)
        if not lines:
            return WriteResult(len(points), len(points), "no point had a finite field value")
        try:
            self._write_api.write(bucket=self.bucket, org=self._org, record=lines, write_precision=_NS)
            result = WriteResult(len(lines))
        except ApiException as exc:
            result = self._classify(exc, len(lines))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkError(f"InfluxDB at {self._url} unreachable: {exc}") from exc
        if without_fields:
            note = f"{without_fields} points had no finite field value"
            message = f"{result.message}; {note}" if result.message else note
            return WriteResult(len(points), result.rejected + without_fields, message)
        return result

    def _classify(self, exc: ApiException, sent: int) -> WriteResult:
        status = int(exc.status or 0)
        message = api_message(exc)
        if status >= 500 or status in _RETRIED_CLIENT_STATUSES or status < 400:
            raise SinkError(f"InfluxDB write failed with HTTP {status}: {message}") from exc
        return WriteResult(sent, rejected_points(message, sent), f"HTTP {status}: {message}")

    def ping(self) -> None:
        """Return when InfluxDB answers ``/ping``; raises ``SinkError`` otherwise."""
        if not self._client.ping():
            raise SinkError(f"InfluxDB at {self._url} does not answer /ping")

    def close(self) -> None:
        """Close the client's connections."""
        for close in self._closers:
            close()
