"""Errors of the node agent.

    CollectorError
    ├── SourceError          a runtime (Docker engine, kubelet) could not be read at all this scrape
    │   └── SourceAuthError  the runtime refused our credentials (401/403): RBAC or token, not transient
    └── ShipError            a batch could not be delivered to the aggregator (retried, then buffered)

One container that cannot be read is not an error of the scrape: the source skips it, logs and counts it.
A source raises ``SourceError`` without logging it; the agent's loop, which carries on, logs it once per
episode (see collector/agent.py).
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error the collector raises on purpose."""


class SourceError(CollectorError):
    """The runtime could not be read this scrape; the message names the source and the cause.

    ``cause`` is a short key for the kind of failure (``connection``, ``unauthorized``, ...): a run of
    failed scrapes with one cause is one episode, logged once.
    """

    def __init__(self, message: str, *, cause: str = "unreadable") -> None:
        super().__init__(message)
        self.cause = cause


class SourceAuthError(SourceError):
    """The runtime refused our credentials."""


class ShipError(CollectorError):
    """Delivery to the aggregator failed; ``retryable`` says whether resending can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
