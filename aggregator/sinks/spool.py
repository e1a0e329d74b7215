"""The durable write path: points journaled to on-disk segments before they are acknowledged, then written.

With a spool configured the disk *is* the write buffer: ``SpooledWriter.write`` returns (or, inside an HTTP
request, lets the response start: ``acks.py``) only once the points are in the active segment and
fsynced, and the shared writer core (``writer.py``) reads records back in order, writes them to InfluxDB
and deletes segments once every point in them was stored (or refused for good). Only the batch in flight
is held in memory, so memory stays flat however long InfluxDB is away; the disk is bounded by
``max_bytes``, and when a new record would not fit the OLDEST segments are deleted first, their unsent
points counted and logged once per episode. A restarted process finds the segments and replays them;
InfluxDB overwrites a point with the same series and timestamp, so points that were written just before a
crash and replayed after it are not duplicated.

Appends are group-committed: one fsync thread takes every write queued while the previous fdatasync ran,
appends their records, and makes them durable with one fdatasync; each write is acknowledged only after
the fdatasync that covers it.

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

import contextlib
import dataclasses
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

from aggregator.points import Point
from aggregator.sinks.acks import Ticket, defer
from aggregator.sinks.writer import Backend, Batch, BatchWriter, Taken, WriterStats

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


@dataclass(slots=True, eq=False)
class _Segment:
    sequence: int
    path: Path
    size: int = 0
    """Bytes of durable records the reader may read (a torn tail found at start is excluded)."""
    points: int = 0
    taken: int = 0
    """Points already handed to the reader (in flight or done)."""
    staged_bytes: int = 0
    """Bytes appended behind ``size`` whose fdatasync has not finished yet: invisible to the reader."""
    staged_points: int = 0


@dataclass(slots=True)
class Staged:
    """Records appended by ``Spool.stage`` and not yet durable; ``sync`` and ``publish`` finish them."""

    segments: list[_Segment] = field(default_factory=list)
    """Segments holding staged bytes, oldest first."""
    descriptors: list[int] = field(default_factory=list)
    """Duplicated descriptors of those segments' files, for fdatasync outside the lock."""
    new_segment: bool = False
    """A segment file was created: its directory entry must be made durable too."""
    dropped: int = 0
    """Points of this group (or of older segments deleted to make room) that will not reach InfluxDB."""
    error: OSError | None = None


def encode_record(points: Sequence[Point], scraped_at_ns: int | None) -> bytes:
    """One spool record (header and JSON payload) holding ``points`` and their scrape time in ns."""
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

    Appending takes three steps so that the slow one runs without the caller's lock: ``stage`` (locked)
    writes records to the files, ``sync`` (unlocked) fdatasyncs them when ``fsync`` is on, ``publish``
    (locked) lets the reader see them, or discards them if a step failed. ``fdatasync`` is handed in so a
    test can watch or hold the fsyncs.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        fsync: bool = True,
        fdatasync: Callable[[int], None] = os.fdatasync,
    ) -> None:
        if max_bytes < _MIN_SEGMENT_BYTES:
            raise ValueError(f"spool max_bytes must be at least {_MIN_SEGMENT_BYTES}")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(
            _MIN_SEGMENT_BYTES, min(_MAX_SEGMENT_BYTES, max_bytes // _SEGMENTS_PER_BOUND)
        )
        self._fsync = fsync
        self._fdatasync = fdatasync
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
        """Bytes of records on disk (durable or being made durable)."""
        return sum(segment.size + segment.staged_bytes for segment in self._segments)

    @property
    def unread_points(self) -> int:
        """Durable points not yet handed to the reader."""
        return sum(segment.points - segment.taken for segment in self._segments)

    # -- appending -----------------------------------------------------------------------------------

    def stage(self, records: Sequence[tuple[bytes, int]]) -> Staged:
        """Append ``records`` (``encode_record`` bytes and point count) to the files, not yet durable.

        Makes room first (oldest segments go); never raises: a disk error is kept in the result.
        """
        staged = Staged()
        for index, (record, count) in enumerate(records):
            if len(record) > self.max_bytes - self.segment_bytes:
                self._start_dropping(count)
                log.error(
                    "a write of %d points (%d bytes) can never fit the spool: dropped", count, len(record)
                )
                staged.dropped += count
                continue
            try:
                staged.dropped += self._make_room(len(record))
                segment = self._segments[-1] if self._segments and self._active is not None else None
                used = segment.size + segment.staged_bytes if segment is not None else 0
                if segment is None or (used and used + len(record) > self.segment_bytes):
                    segment = self._open_segment(staged)
                assert self._active is not None
                self._active.write(record)
            except OSError as exc:
                staged.error = exc
                staged.dropped += sum(lost for _, lost in records[index:])
                return staged
            segment.staged_bytes += len(record)
            segment.staged_points += count
            if not staged.segments or staged.segments[-1] is not segment:
                staged.segments.append(segment)
        if staged.segments and self._active is not None:
            try:
                self._active.flush()
                if self._fsync:
                    staged.descriptors.append(os.dup(self._active.fileno()))
            except OSError as exc:
                staged.error = exc
        return staged

    def sync(self, staged: Staged) -> None:
        """Make ``staged`` durable (fdatasync; the directory too for a new segment); call without the lock."""
        try:
            if staged.error is None and self._fsync:
                for descriptor in staged.descriptors:
                    self._fdatasync(descriptor)
                if staged.new_segment:
                    self._fsync_directory()
        except OSError as exc:
            staged.error = exc
        finally:
            for descriptor in staged.descriptors:
                os.close(descriptor)
            staged.descriptors.clear()

    def publish(self, staged: Staged) -> None:
        """Let the reader see ``staged``; after a failed step, cut it off the files and count it dropped."""
        present = [segment for segment in staged.segments if any(s is segment for s in self._segments)]
        if staged.error is None:
            for segment in present:
                segment.size += segment.staged_bytes
                segment.points += segment.staged_points
                segment.staged_bytes = segment.staged_points = 0
            return
        # The next record starts a new file: offsets in this one may be off by a partial write.
        with contextlib.suppress(OSError):
            self._seal()
        for segment in present:
            staged.dropped += segment.staged_points
            segment.staged_bytes = segment.staged_points = 0
            with contextlib.suppress(OSError):
                os.truncate(segment.path, segment.size)

    def _make_room(self, needed: int) -> int:
        dropped = 0
        while self._segments and self.size_bytes + needed > self.max_bytes:
            if len(self._segments) == 1 and self._active is not None:
                self._seal()  # the next record opens a new segment; this one may go
            oldest = self._segments.pop(0)
            lost = oldest.points + oldest.staged_points - oldest.taken
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

    def _open_segment(self, staged: Staged) -> _Segment:
        if self._active is not None:
            self._active.flush()
            if self._fsync and staged.segments and staged.segments[-1] is self._segments[-1]:
                # Records staged in the segment being sealed are synced with the rest of the group.
                staged.descriptors.append(os.dup(self._active.fileno()))
        self._seal()
        sequence = self._segments[-1].sequence + 1 if self._segments else max(1, self._read_at.segment)
        segment = _Segment(sequence, self.directory / f"{sequence:020d}{_SUFFIX}")
        self._active = segment.path.open("ab")
        staged.new_segment = True
        self._segments.append(segment)
        return segment

    def _seal(self) -> None:
        if self._active is not None:
            active, self._active = self._active, None
            active.close()

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
                if segment.staged_bytes or (segment is self._segments[-1] and self._active is not None):
                    break  # more records are on their way into this segment
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
            done = not oldest.staged_bytes and (
                oldest.sequence < position.segment
                or (oldest.sequence == position.segment and position.offset >= oldest.size)
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
class _SpooledBatch(Batch):
    records: list[SpoolRecord] = field(default_factory=list)


class SpoolStore:
    """A ``PendingStore`` on a ``Spool``: batches are whole records read back in order."""

    where = "in the spool"

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._in_flight = 0

    @property
    def pending_points(self) -> int:
        """Durable points not yet read back."""
        return self.spool.unread_points

    def take(self, max_points: int) -> Taken:
        """Whole records up to ``max_points`` (one larger record goes alone); may raise ``OSError``."""
        records, lost = self.spool.read(max_points)
        if not records:
            return Taken(None, lost)
        batch = _SpooledBatch([point for record in records for point in record.points], records)
        self._in_flight = len(batch.points)
        return Taken(batch, lost)

    def settle(self, batch: Batch) -> list[int]:
        """Delete the segments the batch finished; one latency per record that has a scrape time."""
        assert isinstance(batch, _SpooledBatch)
        self._in_flight = 0
        try:
            self.spool.commit(batch.records[-1].end)
        except OSError as exc:
            log.error("cannot delete written spool segments in %s: %s", self.spool.directory, exc)
        return [record.scraped_at_ns for record in batch.records if record.scraped_at_ns is not None]

    def close(self, *, writer_stopped: bool) -> int:
        """Nothing is dropped: what InfluxDB has not taken stays on disk for the next start."""
        remaining = self.spool.unread_points + self._in_flight
        if remaining:
            log.warning(
                "stopped with %d points not yet in InfluxDB: kept in the spool for the next start", remaining
            )
        self.spool.close()
        return 0

    def describe(self, stats: WriterStats) -> WriterStats:
        """``stats`` with the spool's size, bound and drops."""
        return dataclasses.replace(
            stats,
            spool_bytes=self.spool.size_bytes,
            spool_capacity_bytes=self.spool.max_bytes,
            spool_points_dropped=self.spool.points_dropped,
        )


@dataclass(slots=True)
class _Append:
    points: Sequence[Point]
    scraped_at_ns: int | None
    ticket: Ticket


class SpooledWriter(BatchWriter[SpoolStore]):
    """A ``MonitoredSink`` whose buffer is a ``Spool``: durable on ``write``, written to InfluxDB in order.

    ``write`` queues the points for the fsync thread and waits for their fdatasync, or, inside a
    ``deferred_acks`` scope (an HTTP request), hands the wait to the scope and returns at once. Batches are
    whole records up to ``batch_points`` (one record larger than that goes alone).
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
        super().__init__(
            backend,
            SpoolStore(spool),
            batch_points=batch_points,
            flush_interval_seconds=flush_interval_seconds,
            retry_initial_seconds=retry_initial_seconds,
            retry_max_seconds=retry_max_seconds,
            clock_ns=clock_ns,
            latency_observer=latency_observer,
            thread_name="kpulse-spool-writer",
            accepted=spool.recovered_points,
        )
        self._spool = spool
        self._appends: list[_Append] = []
        self._appends_waiting = threading.Condition(self._lock)
        self._committer_stopping = False
        self._disk_failing = False
        self._committer = threading.Thread(
            target=self._commit_forever, name="kpulse-spool-fsync", daemon=True
        )
        self._committer.start()

    def write(self, points: Sequence[Point], *, scraped_at_ns: int | None = None) -> None:
        """Spool ``points``; durable when this returns, or when the request's scope says so (ns: scrape)."""
        if not points:
            return
        ticket = Ticket()
        with self._lock:
            if not self._accept(len(points)):
                return
            self._appends.append(_Append(tuple(points), scraped_at_ns, ticket))
            self._appends_waiting.notify()
        if not defer(ticket):
            ticket.wait()

    def _closing(self) -> None:
        # Appends already accepted are made durable before the writer drains and the spool closes.
        with self._lock:
            self._committer_stopping = True
            self._appends_waiting.notify()
        self._committer.join()

    # -- the fsync thread ----------------------------------------------------------------------------

    def _commit_forever(self) -> None:
        while True:
            with self._lock:
                self._appends_waiting.wait_for(lambda: self._appends or self._committer_stopping)
                if not self._appends:
                    return
                group, self._appends = self._appends, []
            try:
                self._commit_group(group)
            except Exception:  # every later write would wait forever on a dead fsync thread
                lost = sum(len(append.points) for append in group)
                log.exception("spooling a group of %d points failed unexpectedly: counted as dropped", lost)
                with self._lock:
                    self._count_dropped(lost)
                    self._cond.notify_all()
            finally:
                for append in group:
                    append.ticket.set()

    def _commit_group(self, group: list[_Append]) -> None:
        records: list[tuple[bytes, int]] = []
        unencodable = 0
        for append in group:
            try:
                records.append((encode_record(append.points, append.scraped_at_ns), len(append.points)))
            except (TypeError, ValueError):
                log.exception("cannot spool a write of %d points: dropped", len(append.points))
                unencodable += len(append.points)
        with self._lock:
            staged = self._spool.stage(records)
        self._spool.sync(staged)
        with self._lock:
            self._spool.publish(staged)
            self._count_dropped(staged.dropped + unencodable)
            if staged.error is None:
                self._disk_failing = False
            elif not self._disk_failing:
                self._disk_failing = True
                log.error(
                    "cannot append to the spool in %s: %s (points dropped, counted)",
                    self._spool.directory,
                    staged.error,
                )
            if self._store.pending_points:
                self._pending_grew()
            self._cond.notify_all()  # a flush may wait for points that were just dropped
