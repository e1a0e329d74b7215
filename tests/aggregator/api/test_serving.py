"""Serving several uvicorn servers in one loop: they stop together, and the main app's lifespan always ends.

SIGTERM itself is sent to a real ``python -m aggregator`` in tests/aggregator/test_main_metrics_api.py;
here the servers stop because one of them does (told to, or unable to bind its port). Background work runs
meanwhile and is cancelled at the end; a server's open connections can be closed while it keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable

import uvicorn
from fastapi import FastAPI

from aggregator.api.serving import GroupedServer, close_connections, serve_all

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


async def _until(predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)  # polling within the loop the servers run in


def test_background_work_runs_while_the_servers_serve_and_is_cancelled_when_they_stop() -> None:
    events: list[str] = []
    servers = [_server(FastAPI(), _free_port())]

    async def background() -> None:
        events.append("started")
        try:
            await asyncio.Event().wait()  # runs until cancelled
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def scenario() -> bool:
        async def stop_once_both_run() -> None:
            await _until(lambda: servers[0].started and events, "the server or the background did not start")
            servers[0].should_exit = True

        watcher = asyncio.create_task(stop_once_both_run())
        result = await asyncio.wait_for(serve_all(servers, [background()]), DEADLINE_SECONDS)
        await watcher
        return result

    assert asyncio.run(scenario()) is True
    assert events == ["started", "cancelled"]


async def _get(port: int, *, keep_alive: bool) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = b"" if keep_alive else b"Connection: close\r\n"
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + connection + b"\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length), reader, writer


def test_closing_connections_ends_idle_keep_alive_ones_and_the_server_keeps_serving() -> None:
    app = FastAPI()
    app.add_api_route("/", lambda: {"ok": True})
    port = _free_port()
    # Kept alive far beyond the deadline: only close_connections can end the connection in time.
    server = GroupedServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, timeout_keep_alive=3600)
    )

    async def scenario() -> tuple[int, bytes, bytes]:
        async def client() -> tuple[int, bytes, bytes]:
            await _until(lambda: server.started, "the server did not start")
            answer, reader, writer = await _get(port, keep_alive=True)
            assert answer.startswith(b"HTTP/1.1 200")
            closed = close_connections(server)
            after = await asyncio.wait_for(reader.read(), DEADLINE_SECONDS)  # b"" once the server closed it
            writer.close()
            again, _, other = await _get(port, keep_alive=False)
            other.close()
            server.should_exit = True
            return closed, after, again

        task = asyncio.create_task(client())
        await asyncio.wait_for(serve_all([server]), DEADLINE_SECONDS)
        return await task

    closed, after, again = asyncio.run(scenario())

    assert (closed, after) == (1, b"")
    assert again.startswith(b"HTTP/1.1 200")
