"""ASGI middleware that holds each response until the spooled writes its request made are durable.

The ingest route writes synchronously; with a disk spool the write hands its fsync ticket to the request's
scope instead of blocking the event loop (``aggregator.sinks.acks``). This middleware opens that scope and
awaits its tickets just before the response starts, so a 202 still means "fsynced" while the loop keeps
serving, and concurrent requests share fsyncs. Requests that wrote nothing durable pass straight through.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.sinks.acks import deferred_acks, wait_all


class DurableAckMiddleware:
    """Wraps an ASGI app: ``http.response.start`` waits for the request's deferred write tickets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a deferred-ack scope; responses start only once its writes are durable."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with deferred_acks() as tickets:

            async def send_when_durable(message: Message) -> None:
                if message["type"] == "http.response.start":
                    await wait_all(tickets)
                await send(message)

            await self.app(scope, receive, send_when_durable)
