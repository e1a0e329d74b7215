"""Collector settings: defaults a newcomer relies on, and bad values named by their variable."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from collector.settings import CollectorSettings, describe_settings_error


def test_defaults_scrape_every_10s_and_ship_to_the_local_aggregator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KPULSE_INGEST_TOKEN", raising=False)
    settings = CollectorSettings()
    assert settings.interval_seconds == 10
    assert str(settings.aggregator_url) == "http://127.0.0.1:8080/"
    assert settings.ingest_token is None
    assert settings.effective_scrape_timeout_seconds == pytest.approx(8)


def test_environment_overrides_and_shared_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPULSE_COLLECTOR_INTERVAL_SECONDS", "2.5")
    monkeypatch.setenv("KPULSE_INGEST_TOKEN", "s3cr3t-t0ken")
    settings = CollectorSettings()
    assert settings.interval_seconds == 2.5
    assert settings.ingest_token is not None
    assert settings.ingest_token.get_secret_value() == "s3cr3t-t0ken"
    assert "s3cr3t-t0ken" not in repr(settings)


def test_bad_value_is_described_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPULSE_COLLECTOR_INTERVAL_SECONDS", "-1")
    monkeypatch.setenv("KPULSE_COLLECTOR_SOURCE", "podman")
    with pytest.raises(ValidationError) as caught:
        CollectorSettings()
    message = describe_settings_error(caught.value, env_prefix="KPULSE_COLLECTOR_")
    assert "invalid setting KPULSE_COLLECTOR_INTERVAL_SECONDS: Input should be greater than 0" in message
    assert "invalid setting KPULSE_COLLECTOR_SOURCE:" in message


def test_process_exits_2_with_the_message_and_no_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "collector", "--once"],
        env={"KPULSE_COLLECTOR_INTERVAL_SECONDS": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid setting KPULSE_COLLECTOR_INTERVAL_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr
