"""Uploading the dashboards through Grafana's HTTP API, for Grafanas that are not provisioned from files.

Three kinds of calls, each with ``Authorization: Bearer <token>`` (a service account token):

- ``GET /api/folders/<uid>``, then ``POST /api/folders`` when the kpulse folder is missing;
- ``GET /api/datasources/uid/<uid>``, then ``POST /api/datasources`` when the datasource the panels name is
  missing (an existing one is never changed: it may carry credentials set by hand);
- ``POST /api/dashboards/db`` per dashboard with ``overwrite: true``, so a push replaces older versions.

Usage::

    with requests.Session() as session:
        results = push_all(GrafanaApi("http://grafana:3000", token, session), dashboards(), Provisioning())
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from dashboards import house
from dashboards.errors import PushError
from dashboards.generate import Provisioning, datasource_settings

TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class PushResult:
    """What Grafana answered for one dashboard."""

    uid: str
    version: int | None
    url: str | None


class GrafanaApi:
    """The few Grafana HTTP API calls kpulse needs, over a session the caller owns."""

    def __init__(self, base_url: str, token: str, session: requests.Session) -> None:
        self._base = base_url.rstrip("/")
        self._session = session
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> requests.Response:
        try:
            return self._session.request(
                method, f"{self._base}{path}", json=body, headers=self._headers, timeout=TIMEOUT_SECONDS
            )
        except requests.RequestException as exc:
            raise PushError(f"{method} {self._base}{path}: Grafana could not be reached: {exc}") from exc

    @staticmethod
    def _refused(method: str, path: str, response: requests.Response) -> PushError:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        return PushError(
            f"{method} {path}: Grafana answered {response.status_code}: {message}",
            status=response.status_code,
        )

    def _exists(self, path: str) -> bool:
        response = self._call("GET", path)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._refused("GET", path, response)

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self._call("POST", path, body)
        if response.status_code != 200:
            raise self._refused("POST", path, response)
        answer: dict[str, Any] = response.json()
        return answer

    def ensure_folder(self, uid: str, title: str) -> bool:
        """Create the folder unless it exists; ``True`` when it was created."""
        if self._exists(f"/api/folders/{uid}"):
            return False
        self._post("/api/folders", {"uid": uid, "title": title})
        return True

    def ensure_datasource(self, settings: Mapping[str, Any]) -> bool:
        """Create the datasource unless one with its uid exists; ``True`` when it was created."""
        if self._exists(f"/api/datasources/uid/{settings['uid']}"):
            return False
        self._post("/api/datasources", settings)
        return True

    def save_dashboard(self, dashboard: Mapping[str, Any], *, folder_uid: str, message: str) -> PushResult:
        """Create or overwrite ``dashboard`` (matched by its uid) in the folder."""
        # ``id`` must be null: Grafana matches by uid, and an id from another instance would be refused.
        body = {
            "dashboard": {**dashboard, "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": message,
        }
        answer = self._post("/api/dashboards/db", body)
        version = answer.get("version")
        url = answer.get("url")
        return PushResult(
            uid=str(answer.get("uid", dashboard["uid"])),
            version=version if isinstance(version, int) else None,
            url=url if isinstance(url, str) else None,
        )


def push_all(
    api: GrafanaApi,
    dashboards: Mapping[str, Mapping[str, Any]],
    settings: Provisioning,
    *,
    with_datasource: bool = True,
    message: str = "kpulse: python -m dashboards push",
) -> list[PushResult]:
    """The folder, the datasource (unless ``with_datasource`` is false) and every dashboard, in that order."""
    api.ensure_folder(house.FOLDER_UID, house.FOLDER_TITLE)
    if with_datasource:
        api.ensure_datasource(datasource_settings(settings))
    return [
        api.save_dashboard(dashboard, folder_uid=house.FOLDER_UID, message=message)
        for _, dashboard in sorted(dashboards.items())
    ]
