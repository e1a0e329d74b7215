"""Serving several uvicorn servers in one loop: they stop together, and the main app's lifespan always ends.

SIGTERM itself is sent to a real ``python -m aggregator`` in tests/aggregator/test_main_metrics_api.py;
here the servers stop because one of them does (told to, or unable to bind its port).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI

from aggregator.api.serving import GroupedServer, serve_all

DEADLINE_SECONDS = 10.0


def _app(events: list[str]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    return FastAPI(lifespan=lifespan)


def _server(app: FastAPI, port: int) -> GroupedServer:
    return GroupedServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_when_one_server_stops_the_others_stop_and_shut_their_app_down() -> None:
    events: list[str] = []
    servers = [_server(_app(events), _free_port()), _server(FastAPI(), _free_port())]

    async def scenario() -> bool:
        async def stop_the_second_once_both_serve() -> None:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while not all(server.started for server in servers):
                assert time.monotonic() < deadline, "the servers did not start"
                await asyncio.sleep(0.01)  # polling within the loop the servers run in
            servers[1].should_exit = True

        watcher = asyncio.create_task(stop_the_second_once_both_serve())
        result = await asyncio.wait_for(serve_all(servers), DEADLINE_SECONDS)
        await watcher
        return result

    assert asyncio.run(scenario()) is True
    assert events == ["startup", "shutdown"]


def test_a_server_that_cannot_bind_stops_the_others_and_the_result_says_so() -> None:
    events: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        servers = [_server(_app(events), _free_port()), _server(FastAPI(), taken.getsockname()[1])]

        stopped_cleanly = asyncio.run(asyncio.wait_for(serve_all(servers), DEADLINE_SECONDS))

    assert stopped_cleanly is False
    assert events == ["startup", "shutdown"]
