"""Errors of the aggregator.

    AggregatorError
    ├── BadBatchError   an ingest body that cannot be accepted (maps to a 4xx with the message)
    │   └── BodyTooLargeError   over the size limit, compressed or after decompression (413)
    ├── SinkError       InfluxDB refused or could not be reached
    │   └── PermanentWriteError  the server rejected the data itself (4xx): retrying cannot help
    ├── KubernetesApiError   the Kubernetes API server could not be asked, or refused (metrics API)
    └── FrontProxyConfigError  no usable front-proxy (requestheader) trust for the metrics API

A sink error is retried by the writer; a permanent one is logged with the server's message and counted.
A Kubernetes API error fails the metrics-API request closed (503); a front-proxy configuration error stops
the aggregator at start-up, and later (a periodic re-read) keeps the last good trust, logged and counted.
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Base of every error the aggregator raises on purpose."""


class BadBatchError(AggregatorError):
    """The request body is not an acceptable batch; the message says why."""


class BodyTooLargeError(BadBatchError):
    """The body exceeds ``max_body_bytes``."""


class SinkError(AggregatorError):
    """A write to InfluxDB failed; the message carries the server's own words when it answered."""


class PermanentWriteError(SinkError):
    """InfluxDB rejected the points themselves (bad line protocol, type conflict): do not retry them."""


class KubernetesApiError(AggregatorError):
    """A request to the Kubernetes API server failed; the message says which and why (its own words)."""


class FrontProxyConfigError(AggregatorError):
    """The front-proxy trust (requestheader CA, names, headers) is missing or malformed; says where from."""
