"""Errors of the query API, each carrying the message the client sees.

    QueryError
    ├── NotFoundError            an entity or metric that does not exist (404)
    ├── BadRequestError          a parameter the client got wrong (400)
    │   ├── BadTimeError         ``start``/``end`` not RFC 3339, or out of order
    │   └── SelectorError        a malformed ``labelSelector``
    ├── UnauthorizedError        missing or wrong query token (401)
    └── HistoryUnavailableError  InfluxDB could not answer a range older than the window (503)

Routes raise these; the routers' route classes turn them into each API's own error shape.
"""

from __future__ import annotations


class QueryError(Exception):
    """Base of the query API's errors; ``status_code`` is the HTTP status it maps to."""

    status_code = 500


class NotFoundError(QueryError):
    """The named entity or metric does not exist; ``kind`` and ``name`` say which."""

    status_code = 404

    def __init__(self, message: str, *, kind: str = "", name: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


class BadRequestError(QueryError):
    """A request parameter is invalid; the message says which and why."""

    status_code = 400


class BadTimeError(BadRequestError):
    """``start`` or ``end`` is not an RFC 3339 time, or ``start`` is after ``end``."""


class SelectorError(BadRequestError):
    """A label selector does not follow the Kubernetes selector grammar."""


class UnauthorizedError(QueryError):
    """The query API requires a bearer token and the request had none, or a wrong one."""

    status_code = 401


class HistoryUnavailableError(QueryError):
    """The range reaches before the in-memory window and InfluxDB did not answer."""

    status_code = 503
