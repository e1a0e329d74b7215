"""The durable write path: points journaled to on-disk segments before they are acknowledged, then written.

With a spool configured the disk *is* the write buffer: ``SpooledWriter.write`` appends the points to the
active segment and fsyncs before it returns (so a 202 means "on disk"), and one background thread reads
records back in order, writes them to InfluxDB and deletes segments once every point in them was stored
(or refused for good). Only the batch in flight is held in memory, so memory stays flat however long
InfluxDB is away; the disk is bounded by ``max_bytes``, and when a new record would not fit the OLDEST
segments are deleted first, their unsent points counted and logged once per episode. A restarted process
finds the segments and replays them; InfluxDB overwrites a point with the same series and timestamp, so
points that were written just before a crash and replayed after it are not duplicated.

Segment files are ``<20-digit sequence>.seg``; each record is a 12-byte header (payload length, CRC-32 of
the payload, point count; little-endian uint32) followed by a JSON payload of one ``write`` call. A record
torn by a crash (short or failing its CRC) ends its segment: the points behind it are counted as dropped.

Usage::

    spool = Spool(Path("/var/lib/kpulse/spool"), max_bytes=1 << 30)
    writer = SpooledWriter(backend, spool, batch_points=5000, flush_interval_seconds=1.0)
    writer.write(points, scraped_at_ns=batch.scraped_at_ns)   # returns once the points are fsynced
    writer.close()                                            # unwritten points stay for the next start
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aggregator.errors import SinkError
from aggregator.points import Point
from aggregator.sinks.buffered import Backend, WriteResult, WriterStats

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<III")
_SUFFIX = ".seg"
_MIN_SEGMENT_BYTES = 64 * 1024
_MAX_SEGMENT_BYTES = 16 * 1024 * 1024
_SEGMENTS_PER_BOUND = 16
"""A segment is at most 1/16 of the bound, so dropping the oldest frees room without emptying the spool."""


@dataclass(frozen=True, slots=True, order=True)
class SpoolPosition:
    """A place in the spool: just after a record (``offset`` bytes into segment ``segment``)."""

    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """The points of one ``write`` call, read back; ``end`` is where the next record starts."""

    points: list[Point]
    scraped_at_ns: int | None
    end: SpoolPosition


@dataclass(slots=True)
class _Segment:
    sequence: int
    path: Path
    size: int = 0
    """Bytes of valid records (a torn tail found at start is excluded)."""
    points: int = 0
    taken: int = 0
    """Points already handed to the reader (in flight or done)."""


def _encode(points: Sequence[Point], scraped_at_ns: int | None) -> bytes:
    # Plain JSON keeps NaN and infinity (the line-protocol encoder leaves them out, and counts it, later).
    body = {"s": scraped_at_ns, "p": [[p.measurement, p.tags, p.fields, p.time_ns] for p in points]}
    payload = json.dumps(body, separators=(",", ":")).encode()
    return _HEADER.pack(len(payload), zlib.crc32(payload), len(points)) + payload


def _decode(payload: bytes) -> tuple[list[Point], int | None]:
    body: dict[str, Any] = json.loads(payload)
    points = [
        Point(measurement=m, tags=tags, fields={k: float(v) for k, v in fields.items()}, time_ns=int(t))
        for m, tags, fields, t in body["p"]
    ]
    scraped = body.get("s")
    return points, int(scraped) if scraped is not None else None


class Spool:
    """Append-only segment files in ``directory``, bounded by ``max_bytes``; not thread-safe (callers lock).

    ``fsync=True`` makes every ``append`` durable (``fdatasync``) before it returns; new segment files are
    also made durable in their directory.
    """

    def __init__(self, directory: Path, *, max_bytes: int, fsync: bool = True) -> None:
        if max_bytes < _MIN_SEGMENT_BYTES:
            raise ValueError(f"spool max_bytes must be at least {_MIN_SEGMENT_BYTES}")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(
            _MIN_SEGMENT_BYTES, min(_MAX_SEGMENT_BYTES, max_bytes // _SEGMENTS_PER_BOUND)
        )
        self._fsync = fsync
        directory.mkdir(parents=True, exist_ok=True)
        self._segments: list[_Segment] = []
        self._active: IO[bytes] | None = None
        """Append handle of the last segment; ``None`` when that segment is sealed or there is none."""
        self._reader: IO[bytes] | None = None
        self._reader_sequence = 0
        self._read_at = SpoolPosition(0, 0)
        self.points_dropped = 0
        self.segments_dropped = 0
        self._overflowing = False
        self._dropped_this_episode = 0
        self._recover()
        self.recovered_points = self.unread_points

    # -- state ---------------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes of records on disk."""
        return sum(segment.size for segment in self._segments)

    @property
    def unread_points(self) -> int:
        """Points on disk not yet handed to the reader."""
        return sum(segment.points - segment.taken for segment in self._segments)

    # -- writing -------------------------------------------------------------------------------------

    def append(self, points: Sequence[Point], scraped_at_ns: int | None = None) -> int:
        """Append one record (durable on return when fsync is on); returns points dropped to make room.

        Raises ``OSError`` when the disk refuses the write.
        """
        record = _encode(points, scraped_at_ns)
        if len(record) > self.max_bytes - self.segment_bytes:
            self._start_dropping(len(points))
            log.error(
                "a write of %d points (%d bytes) can never fit the spool: dropped", len(points), len(record)
            )
            return len(points)
        dropped = self._make_room(len(record))
        segment = self._segments[-1] if self._segments and self._active is not None else None
        if segment is None or (segment.size and segment.size + len(record) > self.segment_bytes):
            segment = self._open_segment()
        assert self._active is not None
        self._active.write(record)
        self._active.flush()
        if self._fsync:
            os.fdatasync(self._active.fileno())
        segment.size += len(record)
        segment.points += len(points)
        return dropped

    def _make_room(self, needed: int) -> int:
        dropped = 0
        while self._segments and self.size_bytes + needed > self.max_bytes:
            if len(self._segments) == 1 and self._active is not None:
                self._seal()  # the next record opens a new segment; this one may go
            oldest = self._segments.pop(0)
            lost = oldest.points - oldest.taken
            dropped += lost
            self.segments_dropped += 1
            if self._reader_sequence == oldest.sequence:
                self._close_reader()
            if self._read_at.segment <= oldest.sequence:
                self._read_at = SpoolPosition(oldest.sequence + 1, 0)
            oldest.path.unlink(missing_ok=True)
            self._start_dropping(lost)
        return dropped

    def _start_dropping(self, lost: int) -> None:
        self.points_dropped += lost
        self._dropped_this_episode += lost
        if not self._overflowing:
            self._overflowing = True
            log.error(
                "spool full (%d bytes in %s, InfluxDB unreachable or slower than ingest): "
                "dropping the oldest segments until it drains",
                self.max_bytes,
                self.directory,
            )

    def _open_segment(self) -> _Segment:
        self._seal()
        sequence = self._segments[-1].sequence + 1 if self._segments else max(1, self._read_at.segment)
        segment = _Segment(sequence, self.directory / f"{sequence:020d}{_SUFFIX}")
        self._active = segment.path.open("ab")
        if self._fsync:
            self._fsync_directory()
        self._segments.append(segment)
        return segment

    def _seal(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- reading -------------------------------------------------------------------------------------

    def read(self, max_points: int) -> tuple[list[SpoolRecord], int]:
        """Records in order from the read position, at least one when any, stopping at ``max_points``.

        Also returns how many points were found unreadable (a torn or corrupt record ends its segment).
        """
        records: list[SpoolRecord] = []
        lost = 0
        taken = 0
        while taken < max_points or not records:
            segment = self._reading_segment()
            if segment is None:
                break
            if self._read_at.offset >= segment.size:
                if segment is self._segments[-1] and self._active is not None:
                    break  # the active segment: more may come
                self._read_at = SpoolPosition(segment.sequence + 1, 0)
                continue
            record = self._read_record(segment)
            if record is None:
                lost += segment.points - segment.taken
                segment.taken = segment.points
                segment.size = self._read_at.offset
                log.error(
                    "spool segment %s is corrupt after byte %d: rest dropped", segment.path, segment.size
                )
                continue
            segment.taken += len(record.points)
            taken += len(record.points)
            records.append(record)
        if lost:
            self.points_dropped += lost
        return records, lost

    def _reading_segment(self) -> _Segment | None:
        for segment in self._segments:
            if segment.sequence >= self._read_at.segment:
                if segment.sequence != self._read_at.segment:
                    self._read_at = SpoolPosition(segment.sequence, 0)
                return segment
        return None

    def _read_record(self, segment: _Segment) -> SpoolRecord | None:
        if self._reader is None or self._reader_sequence != segment.sequence:
            self._close_reader()
            self._reader = segment.path.open("rb")
            self._reader_sequence = segment.sequence
        self._reader.seek(self._read_at.offset)
        header = self._reader.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return None
        length, crc, _count = _HEADER.unpack(header)
        payload = self._reader.read(length)
        if len(payload) < length or zlib.crc32(payload) != crc:
            return None
        try:
            points, scraped_at_ns = _decode(payload)
        except (ValueError, KeyError, TypeError):
            return None
        end = SpoolPosition(segment.sequence, self._read_at.offset + _HEADER.size + length)
        self._read_at = end
        return SpoolRecord(points, scraped_at_ns, end)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- trimming ------------------------------------------------------------------------------------

    def commit(self, position: SpoolPosition) -> None:
        """Everything before ``position`` reached InfluxDB (or was refused for good): delete what it frees."""
        while self._segments:
            oldest = self._segments[0]
            done = oldest.sequence < position.segment or (
                oldest.sequence == position.segment and position.offset >= oldest.size
            )
            if not done:
                break
            if len(self._segments) == 1:
                self._seal()
            if self._reader_sequence == oldest.sequence:
                self._close_reader()
            self._segments.pop(0)
            oldest.path.unlink(missing_ok=True)
        if not self._segments:
            self._read_at = SpoolPosition(max(self._read_at.segment, position.segment + 1), 0)
            if self._overflowing:
                log.warning(
                    "spool drained; %d points were dropped while it was full", self._dropped_this_episode
                )
                self._overflowing = False
                self._dropped_this_episode = 0

    def close(self) -> None:
        """Close the files; the segments stay for the next start."""
        self._seal()
        self._close_reader()

    # -- start ---------------------------------------------------------------------------------------

    def _recover(self) -> None:
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            stem = path.name.removesuffix(_SUFFIX)
            if not stem.isdigit():
                continue
            segment = _Segment(int(stem), path)
            self._scan(segment)
            if segment.points:
                self._segments.append(segment)
            else:
                path.unlink(missing_ok=True)
        if self._segments:
            self._read_at = SpoolPosition(self._segments[0].sequence, 0)
            log.info(
                "spool %s holds %d points in %d segments from an earlier run: replaying them",
                self.directory,
                self.unread_points,
                len(self._segments),
            )

    def _scan(self, segment: _Segment) -> None:
        """Count the points from the record headers; a torn tail is left out (CRCs are checked on read)."""
        file_size = segment.path.stat().st_size
        with segment.path.open("rb") as file:
            offset = 0
            while True:
                header = file.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                length, _crc, count = _HEADER.unpack(header)
                if offset + _HEADER.size + length > file_size:
                    break
                file.seek(length, os.SEEK_CUR)
                offset += _HEADER.size + length
                segment.points += count
        segment.size = offset
        if offset < file_size:
            log.warning(
                "spool segment %s ends with a torn record (%d bytes ignored)",
                segment.path,
                file_size - offset,
            )


@dataclass(slots=True)
class _InFlight:
    records: list[SpoolRecord]
    points: list[Point] = field(default_factory=list)


class SpooledWriter:
    """A ``MonitoredSink`` whose buffer is a ``Spool``: durable on ``write``, written to InfluxDB in order.

    Batches are whole records up to ``batch_points`` (one record larger than that goes alone). Transient
    failures are retried with capped exponential backoff; points refused for good are counted.
    """

    def __init__(
        self,
        backend: Backend,
        spool: Spool,
        *,
        batch_points: int = 5000,
        flush_interval_seconds: float = 1.0,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        clock_ns: Callable[[], int] = time.time_ns,
        latency_observer: Callable[[float], None] | None = None,
    ) -> None:
        if batch_points < 1:
            raise ValueError("batch_points must be at least 1")
        self._backend = backend
        self._spool = spool
        self._batch_points = batch_points
        self._interval = flush_interval_seconds
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._clock_ns = clock_ns
        self.latency_observer = latency_observer

        self._cond = threading.Condition()
        self._accepted = spool.recovered_points
        self._finished = 0
        self._written = 0
        self._rejected = 0
        self._dropped = 0
        self._write_errors = 0
        self._in_flight = 0
        self._last_success_ns: int | None = None
        self._last_error: str | None = None
        self._flush_waiters = 0
        self._closed = False
        self._stopping = False
        self._failing_since: float | None = None
        self._failed_attempts = 0
        self._disk_failing = False
        # Recovered points are overdue: send them at once.
        self._oldest_unread_at: float | None = time.monotonic() - self._interval if self._accepted else None

        self._thread = threading.Thread(target=self._run, name="kpulse-spool-writer", daemon=True)
        self._thread.start()

    # -- the Sink protocol ---------------------------------------------------------------------------

    def write(self, points: Sequence[Point], *, scraped_at_ns: int | None = None) -> None:
        """Append ``points`` to the spool and fsync; returns once they are on disk (``scraped_at_ns``: ns)."""
        if not points:
            return
        with self._cond:
            self._accepted += len(points)
            if self._closed:
                self._count_dropped(len(points))
                log.error("points written after the spool writer was closed are dropped (counted)")
                return
            try:
                dropped = self._spool.append(points, scraped_at_ns)
            except OSError as exc:
                self._count_dropped(len(points))
                if not self._disk_failing:
                    self._disk_failing = True
                    log.error(
                        "cannot append to the spool in %s: %s (points dropped, counted)",
                        self._spool.directory,
                        exc,
                    )
                return
            self._disk_failing = False
            self._count_dropped(dropped)
            if self._oldest_unread_at is None:
                self._oldest_unread_at = time.monotonic()
            self._cond.notify_all()

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Write what is spooled now; ``True`` when all of it was written or failed for good in time (s)."""
        with self._cond:
            target = self._accepted
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._finished >= target, timeout=timeout_seconds)
            finally:
                self._flush_waiters -= 1

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Drain for up to ``timeout_seconds``, then stop; what is unwritten stays in the spool."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self.flush(timeout_seconds)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=max(1.0, timeout_seconds))
        with self._cond:
            remaining = self._accepted - self._finished
            self._spool.close()
        if remaining:
            log.warning(
                "stopped with %d points not yet in InfluxDB: kept in the spool for the next start", remaining
            )
        self._backend.close()

    # -- observation ---------------------------------------------------------------------------------

    def stats(self) -> WriterStats:
        """The writer's and the spool's counters now."""
        with self._cond:
            return WriterStats(
                points_accepted=self._accepted,
                points_written=self._written,
                points_rejected=self._rejected,
                points_dropped=self._dropped,
                write_errors=self._write_errors,
                buffer_depth=self._accepted - self._finished,
                buffer_capacity=None,
                last_success_ns=self._last_success_ns,
                last_error=self._last_error,
                spool_bytes=self._spool.size_bytes,
                spool_capacity_bytes=self._spool.max_bytes,
                spool_points_dropped=self._spool.points_dropped,
            )

    def ping(self) -> None:
        """Ask InfluxDB whether it is up; raises ``SinkError`` when it is not."""
        self._backend.ping()

    # -- under the lock ------------------------------------------------------------------------------

    def _count_dropped(self, count: int) -> None:
        self._dropped += count
        self._finished += count

    def _due(self) -> bool:
        if not self._spool.unread_points:
            return False
        if self._spool.unread_points >= self._batch_points or self._flush_waiters or self._closed:
            return True
        return (
            self._oldest_unread_at is not None and time.monotonic() >= self._oldest_unread_at + self._interval
        )

    def _next_batch(self) -> _InFlight | None:
        with self._cond:
            while not self._stopping:
                if self._due():
                    try:
                        records, lost = self._spool.read(self._batch_points)
                    except OSError as exc:
                        log.error("cannot read the spool in %s: %s", self._spool.directory, exc)
                        self._cond.wait(self._retry_max)
                        continue
                    self._count_dropped(lost)
                    self._oldest_unread_at = None if not self._spool.unread_points else self._oldest_unread_at
                    if not records:
                        continue
                    batch = _InFlight(records, [point for record in records for point in record.points])
                    self._in_flight = len(batch.points)
                    return batch
                timeout = None
                if self._oldest_unread_at is not None:
                    timeout = max(0.0, self._oldest_unread_at + self._interval - time.monotonic())
                elif self._spool.unread_points:
                    self._oldest_unread_at = time.monotonic()
                    continue
                self._cond.wait(timeout)
            return None

    # -- the writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._deliver(batch)

    def _deliver(self, batch: _InFlight) -> None:
        delay = self._retry_initial
        while True:
            try:
                result = self._backend.write_batch(batch.points)
            except SinkError as exc:
                if not self._wait_to_retry(exc, delay):
                    return  # stopping: the batch is still in the spool, replayed at the next start
                delay = min(delay * 2, self._retry_max)
                continue
            except Exception as exc:  # the writer thread must survive a bug in one batch
                log.exception("InfluxDB backend failed unexpectedly; %d points lost", len(batch.points))
                result = WriteResult(sent=len(batch.points), rejected=len(batch.points), message=repr(exc))
            self._commit(batch, result)
            return

    def _wait_to_retry(self, exc: SinkError, delay: float) -> bool:
        with self._cond:
            self._write_errors += 1
            self._last_error = str(exc)
            self._failed_attempts += 1
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("InfluxDB write failed, keeping points in the spool and retrying: %s", exc)
            self._cond.wait_for(lambda: self._stopping, timeout=delay)
            return not self._stopping

    def _commit(self, batch: _InFlight, result: WriteResult) -> None:
        now_ns = self._clock_ns()
        with self._cond:
            sent = len(batch.points)
            rejected = min(result.rejected, sent)
            self._written += sent - rejected
            self._rejected += rejected
            self._finished += sent
            self._in_flight = 0
            self._last_success_ns = now_ns
            self._last_error = None
            if result.message is not None:
                self._write_errors += 1
                log.error("InfluxDB refused %d of %d points for good: %s", rejected, sent, result.message)
            if self._failing_since is not None:
                log.info(
                    "InfluxDB writes recovered after %d failed attempts over %.1f s",
                    self._failed_attempts,
                    time.monotonic() - self._failing_since,
                )
                self._failing_since = None
                self._failed_attempts = 0
            try:
                self._spool.commit(batch.records[-1].end)
            except OSError as exc:
                log.error("cannot delete written spool segments in %s: %s", self._spool.directory, exc)
            self._cond.notify_all()
        observer = self.latency_observer
        if observer is not None:
            for record in batch.records:
                if record.scraped_at_ns is not None:
                    observer((now_ns - record.scraped_at_ns) / 1e9)
