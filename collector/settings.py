"""The collector's settings, read from ``KPULSE_COLLECTOR_*`` environment variables (and the shared token)."""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class CollectorSettings(BaseSettings):
    """Everything the node agent can be told; each field is ``KPULSE_COLLECTOR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="KPULSE_COLLECTOR_", extra="ignore", frozen=True)

    interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    source: Literal["docker", "kubelet", "auto"] = "auto"
    node_name: Annotated[str, Field(min_length=1)] = Field(default_factory=socket.gethostname)

    aggregator_url: HttpUrl = HttpUrl("http://127.0.0.1:8080")
    ingest_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("KPULSE_INGEST_TOKEN", "KPULSE_COLLECTOR_INGEST_TOKEN")
    )
    aggregator_ca_file: Path | None = None
    """PEM bundle of the CA(s) that signed the aggregator's certificate (https URLs); unset: the system's."""
    ship_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    buffer_max_batches: Annotated[int, Field(ge=1)] = 360
    """Batches kept while the aggregator is unreachable (360 = one hour at 10 s); oldest dropped first."""
    retry_initial_seconds: Annotated[float, Field(gt=0)] = 0.5
    retry_max_seconds: Annotated[float, Field(gt=0)] = 30.0

    docker_url: str | None = None
    """Docker Engine address; unset means ``DOCKER_HOST`` or the local socket."""
    docker_concurrency: Annotated[int, Field(ge=1, le=512)] = 64
    docker_inspect_max_age_seconds: Annotated[float, Field(gt=0)] = 300.0
    """Longest a cached inspect answer (limits, start time) is used; engine events drop it sooner."""
    scrape_timeout_seconds: Annotated[float, Field(gt=0)] | None = None
    """Per-scrape deadline; unset means 80% of the interval. Containers not read by then are skipped."""
    default_namespace: Annotated[str, Field(min_length=1)] = "default"
    """Namespace of plain containers that carry no compose project label."""
    proc_path: Path = Path("/proc")
    """The host's /proc (mount it read-only at e.g. /host/proc when the collector runs in a container)."""

    kubelet_url: str | None = None
    """Kubelet base URL; unset means ``https://$NODE_IP:10250``."""
    kubelet_token_file: Path = SERVICE_ACCOUNT_DIR / "token"
    kubelet_ca_file: Path | None = None
    kubelet_insecure_skip_verify: bool = False

    heartbeat_file: Path | None = None
    """Touched after every scheduled scrape; ``python -m collector --check-heartbeat`` checks its age."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def effective_scrape_timeout_seconds(self) -> float:
        """The per-scrape deadline in seconds."""
        return self.scrape_timeout_seconds or self.interval_seconds * 0.8


@lru_cache(maxsize=1)
def get_settings() -> CollectorSettings:
    """The process's settings, read once; tests call ``get_settings.cache_clear()`` or pass their own."""
    return CollectorSettings()


def describe_settings_error(exc: ValidationError, *, env_prefix: str) -> str:
    """One line per bad setting, naming the environment variable a user has to fix."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = field if field.startswith("KPULSE_") else f"{env_prefix}{field.upper()}"
        lines.append(f"invalid setting {variable}: {error['msg']}")
    return "\n".join(lines)
