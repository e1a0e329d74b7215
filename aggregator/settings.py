"""The aggregator's settings, from ``KPULSE_AGGREGATOR_*`` environment variables (and the shared token)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AggregatorSettings(BaseSettings):
    """Everything the cluster service can be told; each field is ``KPULSE_AGGREGATOR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="KPULSE_AGGREGATOR_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    cluster_name: Annotated[str, Field(min_length=1)] = "default"
    resolution_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """Points are written at multiples of this; keep it equal to the collectors' interval."""
    rollup_grace_seconds: Annotated[float, Field(ge=0)] = 5.0
    """How long after a bucket ends the namespace/cluster rollups wait for nodes that have not reported."""
    series_expiry_seconds: Annotated[float, Field(gt=0)] = 300.0
    """State of containers, pods and nodes not seen for this long is released."""

    ingest_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("KPULSE_INGEST_TOKEN", "KPULSE_AGGREGATOR_INGEST_TOKEN")
    )
    max_body_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    """Largest accepted ingest body, after gzip decompression (413 above)."""

    influx_api: Literal["v1", "v2"] = "v1"
    influx_url: HttpUrl = HttpUrl("http://127.0.0.1:8086")
    influx_database: Annotated[str, Field(min_length=1)] = "kpulse"
    influx_retention_policy: str | None = None
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    influx_org: str | None = None
    influx_bucket: str | None = None
    influx_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    write_batch_points: Annotated[int, Field(ge=1)] = 5000
    flush_interval_seconds: Annotated[float, Field(gt=0)] = 1.0
    write_buffer_max_points: Annotated[int, Field(ge=1)] = 2_000_000
    """Points held in memory while InfluxDB is unreachable; the oldest are dropped (counted, logged) above."""
    spool_dir: Path | None = None
    """Directory of the on-disk spool; unset: the memory buffer above only (see docs/durability.md)."""
    spool_max_bytes: Annotated[int, Field(ge=1024 * 1024)] = 1024 * 1024 * 1024
    """Most bytes the spool keeps on disk; the oldest segments are dropped (counted, logged) above."""

    query_window_seconds: Annotated[float, Field(gt=0)] = 900.0
    """How much recent data the query API holds in memory; older ranges are read from InfluxDB."""
    series_eviction_seconds: Annotated[float, Field(gt=0)] = 900.0
    """The query API forgets containers, pods and nodes not seen for this long."""
    query_token: SecretStr | None = None
    """When set, the query API (Heapster model, metrics.k8s.io) requires it as a bearer token."""

    tls_cert_file: Path | None = None
    """PEM certificate (chain) to serve HTTPS with; needs ``tls_key_file``. Unset: plain HTTP."""
    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file``."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _v2_needs_credentials(self) -> AggregatorSettings:
        if self.influx_api == "v2":
            missing = [
                f"KPULSE_AGGREGATOR_{name.upper()}"
                for name in ("influx_token", "influx_org", "influx_bucket")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"influx_api=v2 needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _tls_needs_both_files(self) -> AggregatorSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "HTTPS needs both KPULSE_AGGREGATOR_TLS_CERT_FILE and KPULSE_AGGREGATOR_TLS_KEY_FILE"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> AggregatorSettings:
    """The process's settings, read once; tests call ``get_settings.cache_clear()`` or pass their own."""
    return AggregatorSettings()
