"""Runs the aggregator's uvicorn servers in one event loop and stops them together (signal or failure).

uvicorn installs its own signal handlers per server, and with two servers the second replaces the first's:
only one would stop. Here uvicorn's are left out and one handler tells every server to exit; a second
SIGINT forces it, as uvicorn does. A server that stops by itself (it could not bind its port) stops the
others too, so the main app's lifespan always drains its sink.

Usage::

    ok = asyncio.run(serve_all([GroupedServer(main_config), GroupedServer(metrics_api_config)]))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence

import uvicorn

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GroupedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve_all`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: :func:`serve_all` handles signals for every server of the process."""
        yield


async def serve_all(servers: Sequence[uvicorn.Server]) -> bool:
    """Serve until a stop signal or until one server stops; ``True`` when every server started and stopped."""
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        for server in servers:
            if server.should_exit and sig == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        tasks = [asyncio.create_task(_serve(server)) for server in servers]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server in servers:
            server.should_exit = True
        results = await asyncio.gather(*tasks)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return all(results)


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
