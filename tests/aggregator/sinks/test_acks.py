"""Write tickets and the deferred-ack scope: waiting in a thread or on the loop, collected per context."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from aggregator.sinks.acks import Ticket, defer, deferred_acks, wait_all


def test_a_ticket_set_from_another_thread_wakes_blocking_and_async_waiters() -> None:
    ticket = Ticket()
    assert not ticket.wait(timeout_seconds=0.01)

    async def main() -> bool:
        waiting = asyncio.ensure_future(ticket.wait_async())
        await asyncio.sleep(0)  # let the waiter register before the other thread sets the ticket
        assert not waiting.done()
        threading.Thread(target=ticket.set).start()
        await asyncio.wait_for(waiting, timeout=5)
        return ticket.is_set()

    assert asyncio.run(main())
    assert ticket.wait(timeout_seconds=0)


def test_writes_defer_their_tickets_only_inside_a_scope_and_the_scope_ends_with_its_context() -> None:
    outside = Ticket()
    assert not defer(outside)

    with deferred_acks() as tickets:
        first, second = Ticket(), Ticket()
        assert defer(first)
        # A thread started with this context (as the threadpool runs sync code) shares the scope.
        contextvars.copy_context().run(lambda: defer(second))
        assert tickets == [first, second]
    assert not defer(Ticket())


def test_wait_all_returns_only_when_every_ticket_is_set() -> None:
    tickets = [Ticket(), Ticket(), Ticket()]
    pending = list(tickets)

    async def main() -> None:
        waiting = asyncio.ensure_future(wait_all(pending))
        for ticket in tickets:
            await asyncio.sleep(0.01)
            assert not waiting.done()
            threading.Thread(target=ticket.set).start()
        await asyncio.wait_for(waiting, timeout=5)

    asyncio.run(main())
    assert pending == []
