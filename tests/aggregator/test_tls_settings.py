"""TLS settings of the aggregator: a certificate and its key come together or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aggregator.settings import AggregatorSettings


def test_https_is_off_by_default_and_on_with_both_files() -> None:
    assert AggregatorSettings().tls_cert_file is None
    settings = AggregatorSettings(tls_cert_file=Path("/tls/cert.pem"), tls_key_file=Path("/tls/key.pem"))
    assert (settings.tls_cert_file, settings.tls_key_file) == (Path("/tls/cert.pem"), Path("/tls/key.pem"))


@pytest.mark.parametrize("given", ["tls_cert_file", "tls_key_file"])
def test_one_file_without_the_other_is_refused_naming_both_variables(given: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AggregatorSettings(**{given: Path("/tls/one.pem")})

    message = str(caught.value)
    assert "KPULSE_AGGREGATOR_TLS_CERT_FILE" in message
    assert "KPULSE_AGGREGATOR_TLS_KEY_FILE" in message
