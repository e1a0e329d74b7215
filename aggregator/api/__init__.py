"""The aggregator's HTTP service: ingest from collectors, health probes and its own metrics (FastAPI)."""

from aggregator.api.app import build_sink, create_app

__all__ = ["build_sink", "create_app"]
