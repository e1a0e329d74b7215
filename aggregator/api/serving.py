"""Runs the aggregator's uvicorn servers in one event loop and stops them together (signal or failure).

uvicorn installs its own signal handlers per server, and with two servers the second replaces the first's:
only one would stop. Here uvicorn's are left out and one handler tells every server to exit; a second
SIGINT forces it, as uvicorn does. A server that stops by itself (it could not bind its port) stops the
others too, so the main app's lifespan always drains its sink. Background work (the front-proxy trust's
reloads) runs in the same loop while they serve and is cancelled when they stop.

Usage::

    ok = asyncio.run(serve_all([GroupedServer(main_config), GroupedServer(metrics_api_config)], [reloads]))
    close_connections(metrics_api_server)      # clients connect (and handshake) again
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GroupedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve_all`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: :func:`serve_all` handles signals for every server of the process."""
        yield


async def serve_all(
    servers: Sequence[uvicorn.Server], background: Sequence[Coroutine[Any, Any, None]] = ()
) -> bool:
    """Serve until a stop signal or until one server stops; ``True`` when every server started and stopped.

    ``background`` coroutines run meanwhile and are cancelled once the servers have stopped.
    """
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        for server in servers:
            if server.should_exit and sig == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    helpers = [asyncio.create_task(coroutine) for coroutine in background]
    try:
        tasks = [asyncio.create_task(_serve(server)) for server in servers]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server in servers:
            server.should_exit = True
        results = await asyncio.gather(*tasks)
    finally:
        for helper in helpers:
            helper.cancel()
        for outcome in await asyncio.gather(*helpers, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("background task failed: %r", outcome)
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return all(results)


def close_connections(server: uvicorn.Server) -> int:
    """End ``server``'s connections as its shutdown does: idle ones now, busy ones after their response.

    Returns how many there were. The server keeps listening; clients connect again.
    """
    connections = list(server.server_state.connections)
    for connection in connections:
        connection.shutdown()
    return len(connections)


async def _serve(server: uvicorn.Server) -> bool:
    try:
        await server.serve()
    except SystemExit as exc:
        # uvicorn exits the process when a server cannot start (port taken, lifespan failed); here that
        # stops the other servers cleanly instead.
        log.error("%s:%s did not start (exit status %s)", server.config.host, server.config.port, exc.code)
        return False
    except Exception:  # one server failing must not leave the others running without a way to stop
        log.exception("%s:%s failed", server.config.host, server.config.port)
        return False
    return True
