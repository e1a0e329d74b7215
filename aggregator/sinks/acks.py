"""Acknowledging a write only once it is durable, without making the event loop wait for the disk.

A spooled write returns a ``Ticket`` that the spool's fsync thread completes once the write's record is
durable (or was counted as dropped). Inside an HTTP request the ingest route's write hands its ticket to the
request's scope (``deferred_acks``, opened by ``aggregator.api.durable_acks``), and the response starts only
after ``wait_all`` of the scope's tickets: the 202 still means "on disk", while the loop serves other
requests, whose records then share one fsync (group commit). Outside a scope the writer blocks on the
ticket, as a plain synchronous call would.

Usage::

    with deferred_acks() as tickets:     # one per request
        sink.write(points)               # a SpooledWriter defers instead of blocking
    await wait_all(tickets)              # before the response starts
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar


class Ticket:
    """Done once the write it stands for is durable or has been counted as dropped; thread-safe."""

    __slots__ = ("_done", "_lock", "_waiters")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def set(self) -> None:
        """Mark the write done and wake every waiter (called from the fsync thread)."""
        with self._lock:
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # A loop already closed has nobody left to answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    def is_set(self) -> bool:
        """Whether the write is done."""
        return self._done.is_set()

    def wait(self, timeout_seconds: float | None = None) -> bool:
        """Block this thread until done; ``False`` when ``timeout_seconds`` passed first."""
        return self._done.wait(timeout_seconds)

    async def wait_async(self) -> None:
        """Wait on the running event loop without blocking it."""
        if self._done.is_set():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._done.is_set():
                return
            self._waiters.append((loop, future))
        await future


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_scope: ContextVar[list[Ticket] | None] = ContextVar("kpulse_deferred_acks", default=None)


@contextlib.contextmanager
def deferred_acks() -> Iterator[list[Ticket]]:
    """Collect the tickets of the writes made in this context (one HTTP request) instead of blocking."""
    tickets: list[Ticket] = []
    token = _scope.set(tickets)
    try:
        yield tickets
    finally:
        _scope.reset(token)


def defer(ticket: Ticket) -> bool:
    """Hand ``ticket`` to the current scope; ``False`` when there is none (the caller must wait itself)."""
    tickets = _scope.get()
    if tickets is None:
        return False
    tickets.append(ticket)
    return True


async def wait_all(tickets: list[Ticket]) -> None:
    """Wait, without blocking the loop, until every ticket handed to the scope so far is done."""
    while tickets:
        await tickets.pop(0).wait_async()
