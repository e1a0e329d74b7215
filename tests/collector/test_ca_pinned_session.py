"""The collector's session trusts the aggregator CA it is given even when the environment names another."""

from __future__ import annotations

import pytest
import requests

from collector.__main__ import CaPinnedSession


def test_the_ca_file_wins_over_requests_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session = CaPinnedSession("/etc/kpulse/aggregator-ca.pem")

    merged = session.merge_environment_settings("https://aggregator:8443", {}, None, None, None)

    assert merged["verify"] == "/etc/kpulse/aggregator-ca.pem"
    session.close()


def test_a_plain_session_would_have_let_the_environment_win(monkeypatch: pytest.MonkeyPatch) -> None:
    # Why CaPinnedSession exists: requests' own precedence, checked so a fix upstream is noticed.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session = requests.Session()
    session.verify = "/etc/kpulse/aggregator-ca.pem"

    merged = session.merge_environment_settings("https://aggregator:8443", {}, None, None, None)

    assert merged["verify"] == "/etc/ssl/certs/ca-certificates.crt"
    session.close()
