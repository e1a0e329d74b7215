"""The query side built from settings: window, eviction, token and history follow the environment."""

from __future__ import annotations

import pytest

from aggregator.api.query_state import build_query_api
from aggregator.query.store import RecentStore
from aggregator.settings import AggregatorSettings


def test_the_window_eviction_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPULSE_AGGREGATOR_RESOLUTION_SECONDS", "5")
    monkeypatch.setenv("KPULSE_AGGREGATOR_QUERY_WINDOW_SECONDS", "60")
    monkeypatch.setenv("KPULSE_AGGREGATOR_SERIES_EVICTION_SECONDS", "120")
    monkeypatch.setenv("KPULSE_AGGREGATOR_QUERY_TOKEN", "s3cret")

    query = build_query_api(AggregatorSettings())
    try:
        assert query.store.capacity == 12
        assert query.store.resolution_ns == 5_000_000_000
        assert query.token is not None
        assert query.token.get_secret_value() == "s3cret"
        assert "s3cret" not in repr(query)
        assert query.service.history is not None  # v1 API: history through InfluxQL
    finally:
        query.close()


def test_the_defaults_hold_fifteen_minutes_and_v2_has_no_history() -> None:
    settings = AggregatorSettings(
        influx_api="v2", influx_token="t", influx_org="o", influx_bucket="b", query_token=None
    )
    query = build_query_api(settings)
    assert settings.query_window_seconds == settings.series_eviction_seconds == 900
    assert query.store.capacity == 90
    assert query.service.history is None
    assert query.token is None


def test_a_window_that_would_make_huge_rings_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="KPULSE_AGGREGATOR_QUERY_WINDOW_SECONDS"):
        RecentStore(resolution_seconds=0.001, window_seconds=3600, eviction_seconds=60)
