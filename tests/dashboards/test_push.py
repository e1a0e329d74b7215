"""``push`` speaks Grafana's HTTP API: checked against a small local HTTP server that records each request
and answers the way Grafana documents (no Grafana server can run in this test environment)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from dashboards import house
from dashboards.__main__ import main
from dashboards.errors import PushError
from dashboards.generate import DASHBOARD_NAMES, Provisioning, dashboards
from dashboards.push import GrafanaApi, push_all

TOKEN = "glsa_test-token"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGrafana:
    """State and canned answers of the fake server."""

    folder_exists: bool = False
    datasource_exists: bool = False
    dashboard_status: int = 200
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == f"/api/folders/{house.FOLDER_UID}":
            return (
                (200, {"uid": house.FOLDER_UID})
                if self.folder_exists
                else (404, {"message": "folder not found"})
            )
        if method == "POST" and path == "/api/folders":
            self.folder_exists = True
            return 200, {"uid": body["uid"], "title": body["title"]}
        if method == "GET" and path == f"/api/datasources/uid/{house.DATASOURCE_UID}":
            if self.datasource_exists:
                return 200, {"uid": house.DATASOURCE_UID}
            return 404, {"message": "Data source not found"}
        if method == "POST" and path == "/api/datasources":
            self.datasource_exists = True
            return 200, {"message": "Datasource added", "datasource": body}
        if method == "POST" and path == "/api/dashboards/db":
            if self.dashboard_status != 200:
                return self.dashboard_status, {"message": "The dashboard has been changed by someone else"}
            uid = body["dashboard"]["uid"]
            return 200, {"status": "success", "uid": uid, "version": 3, "url": f"/d/{uid}/x", "id": 7}
        return 404, {"message": "Not found"}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            state.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                status, answer = 401, {"message": "Unauthorized"}
            else:
                status, answer = state.answer(self.command, self.path, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle  # noqa: N815 - the names http.server dispatches to

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _push(grafana: FakeGrafana, token: str = TOKEN, **options: Any) -> list[Any]:
    with requests.Session() as session:
        return push_all(
            GrafanaApi(grafana.url + "/", token, session), dashboards(), Provisioning(), **options
        )


def test_push_creates_folder_and_datasource_then_overwrites_each_dashboard(grafana: FakeGrafana) -> None:
    results = _push(grafana)
    calls = [(call.method, call.path) for call in grafana.requests]
    assert calls[:4] == [
        ("GET", f"/api/folders/{house.FOLDER_UID}"),
        ("POST", "/api/folders"),
        ("GET", f"/api/datasources/uid/{house.DATASOURCE_UID}"),
        ("POST", "/api/datasources"),
    ]
    assert calls[4:] == [("POST", "/api/dashboards/db")] * len(DASHBOARD_NAMES)
    for call in grafana.requests:
        assert call.headers["Authorization"] == f"Bearer {TOKEN}"
        if call.method == "POST":
            assert call.headers["Content-Type"] == "application/json"

    assert grafana.requests[1].body == {"uid": house.FOLDER_UID, "title": house.FOLDER_TITLE}
    datasource = grafana.requests[3].body
    assert datasource["uid"] == house.DATASOURCE_UID
    assert datasource["type"] == "influxdb"
    assert datasource["url"] == "http://influxdb:8086"
    assert datasource["jsonData"]["dbName"] == "kpulse"

    expected = dashboards()
    pushed = [call.body for call in grafana.requests[4:]]
    assert sorted(body["dashboard"]["uid"] for body in pushed) == sorted(d["uid"] for d in expected.values())
    for body in pushed:
        assert body["overwrite"] is True
        assert body["folderUid"] == house.FOLDER_UID
        assert body["message"]
        assert body["dashboard"]["id"] is None
        original = next(d for d in expected.values() if d["uid"] == body["dashboard"]["uid"])
        assert body["dashboard"] == original
    assert [result.version for result in results] == [3] * len(DASHBOARD_NAMES)
    assert all(result.url == f"/d/{result.uid}/x" for result in results)


def test_push_leaves_an_existing_folder_and_datasource_alone(grafana: FakeGrafana) -> None:
    grafana.folder_exists = grafana.datasource_exists = True
    _push(grafana)
    posts = {call.path for call in grafana.requests if call.method == "POST"}
    assert posts == {"/api/dashboards/db"}


def test_push_without_datasource_never_asks_for_it(grafana: FakeGrafana) -> None:
    _push(grafana, with_datasource=False)
    assert not [call for call in grafana.requests if "datasources" in call.path]


def test_a_refused_dashboard_stops_the_push_with_grafanas_message(grafana: FakeGrafana) -> None:
    grafana.dashboard_status = 412
    with pytest.raises(PushError, match="412: The dashboard has been changed by someone else") as caught:
        _push(grafana)
    assert caught.value.status == 412


def test_a_bad_token_is_reported(grafana: FakeGrafana) -> None:
    with pytest.raises(PushError, match="401: Unauthorized"):
        _push(grafana, token="wrong")


def test_an_unreachable_grafana_is_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused at once.
    with requests.Session() as session, pytest.raises(PushError, match="could not be reached"):
        push_all(GrafanaApi(f"http://127.0.0.1:{port}", TOKEN, session), dashboards(), Provisioning())


def test_cli_push(grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", "--grafana-url", grafana.url, "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert "kpulse-cluster: version 3 /d/kpulse-cluster/x" in out


def test_cli_push_takes_the_token_from_the_environment(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KPULSE_GRAFANA_TOKEN", TOKEN)
    assert main(["push", "--grafana-url", grafana.url, "--no-datasource"]) == 0
    monkeypatch.delenv("KPULSE_GRAFANA_TOKEN")
    assert main(["push", "--grafana-url", grafana.url]) == 2
    assert "KPULSE_GRAFANA_TOKEN" in capsys.readouterr().err


def test_cli_push_failure_exits_1(grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    grafana.dashboard_status = 400
    assert main(["push", "--grafana-url", grafana.url, "--token", TOKEN]) == 1
    assert "push failed" in capsys.readouterr().err
