"""Errors of the dashboards package.

    DashboardsError
    ├── DefinitionError   a dashboard asks for something the catalog does not allow (wrong level, unknown tag)
    ├── RenderError       a query cannot be rendered (a variable without a value, a malformed regex)
    └── PushError         Grafana's HTTP API refused a request or could not be reached

A definition error stops ``python -m dashboards build``: a schema change breaks the build, not the dashboards.
"""

from __future__ import annotations


class DashboardsError(Exception):
    """Base of every error the dashboards package raises on purpose."""


class DefinitionError(DashboardsError):
    """A dashboard definition does not fit the catalog; the message names the field, level or tag."""


class RenderError(DashboardsError):
    """A query could not be rendered the way Grafana would; the message names the variable."""


class PushError(DashboardsError):
    """Grafana answered an API call with an error, or did not answer; the message carries its words."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status Grafana answered with, ``None`` when it could not be reached."""
