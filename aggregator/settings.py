"""The aggregator's settings, from ``KPULSE_AGGREGATOR_*`` environment variables (and the shared token)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, HttpUrl, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _names_list(value: Any) -> Any:
    # Comma-separated, as the API server's --requestheader-* flags take them; a JSON array, as the
    # extension-apiserver-authentication ConfigMap publishes them, works too.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON array of strings ({exc}); or give a,b,c") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


Names = Annotated[list[str], NoDecode, BeforeValidator(_names_list)]
"""A list setting given as ``a,b`` or ``["a", "b"]``."""


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
    pod_list_view_idle_seconds: Annotated[float, Field(ge=0)] = 300.0
    """After an all-pods metrics.k8s.io list, every batch re-renders its pods for this long, so further lists
    are one pass over kept texts (docs/query-api.md); 0 renders every list from scratch."""
    query_token: SecretStr | None = None
    """When set, the query API (Heapster model, metrics.k8s.io) requires it as a bearer token."""

    tls_cert_file: Path | None = None
    """PEM certificate (chain) to serve HTTPS with; needs ``tls_key_file``. Unset: plain HTTP."""
    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file``."""

    metrics_api_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """HTTPS port serving ``metrics.k8s.io`` to the Kubernetes API server (an APIService); unset: off."""
    metrics_api_host: str | None = None
    """Address of that port; unset: the same as ``host``."""
    metrics_api_cert_file: Path | None = None
    """PEM serving certificate (chain) of the metrics API; unset: a self-signed one made at start-up."""
    metrics_api_key_file: Path | None = None
    """PEM private key of ``metrics_api_cert_file``."""
    metrics_api_requestheader_client_ca_file: Path | None = None
    """CA of the API server's front-proxy client certificate; unset: read, with the names and headers below,
    from the ConfigMap kube-system/extension-apiserver-authentication through the API server."""
    metrics_api_requestheader_allowed_names: Names = []
    """Common names the front-proxy certificate may have; empty: any certificate that CA signed."""
    metrics_api_requestheader_username_headers: Annotated[Names, Field(min_length=1)] = ["X-Remote-User"]
    metrics_api_requestheader_group_headers: Names = ["X-Remote-Group"]
    metrics_api_requestheader_extra_headers_prefix: Names = ["X-Remote-Extra-"]
    metrics_api_requestheader_uid_headers: Names = []
    metrics_api_requestheader_reload_seconds: Annotated[float, Field(gt=0)] = 60.0
    """How often the front-proxy trust (CA file or ConfigMap) is read again; a failed read keeps the last."""
    metrics_api_kubernetes_url: HttpUrl | None = None
    """The API server (ConfigMap, SubjectAccessReviews); unset: https://$KUBERNETES_SERVICE_HOST:$..._PORT."""
    metrics_api_service_account_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    """Where the pod's service-account ``token`` and the API server's ``ca.crt`` are."""
    metrics_api_authorization_allowed_ttl_seconds: Annotated[float, Field(ge=0)] = 10.0
    """How long a SubjectAccessReview that allowed a request is reused (metrics-server's default)."""
    metrics_api_authorization_denied_ttl_seconds: Annotated[float, Field(ge=0)] = 10.0
    """How long a SubjectAccessReview that denied a request is reused (metrics-server's default)."""
    metrics_api_insecure_skip_authorization: bool = False
    """UNSAFE: serve every user the front proxy names, without asking the API server (SubjectAccessReview)."""

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

    @model_validator(mode="after")
    def _metrics_api_is_consistent(self) -> AggregatorSettings:
        if (self.metrics_api_cert_file is None) != (self.metrics_api_key_file is None):
            raise ValueError(
                "the metrics API's own certificate needs both KPULSE_AGGREGATOR_METRICS_API_CERT_FILE and "
                "KPULSE_AGGREGATOR_METRICS_API_KEY_FILE (neither: a self-signed one is made)"
            )
        if self.metrics_api_port is not None and self.metrics_api_port == self.port:
            raise ValueError(
                "KPULSE_AGGREGATOR_METRICS_API_PORT must differ from KPULSE_AGGREGATOR_PORT "
                f"(both are {self.port})"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> AggregatorSettings:
    """The process's settings, read once; tests call ``get_settings.cache_clear()`` or pass their own."""
    return AggregatorSettings()
