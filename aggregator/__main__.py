"""``python -m aggregator``: read the settings, configure logging, serve the API with uvicorn.

Exit status 2 with one line per bad setting (naming its environment variable) when the settings are
invalid; defaults listen on 127.0.0.1:8080 and write through the v1 API to http://127.0.0.1:8086,
database ``kpulse`` (created when missing).
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from aggregator.api.app import create_app
from aggregator.api.deps import configured_token
from aggregator.settings import AggregatorSettings, get_settings

log = logging.getLogger("aggregator")

ENV_PREFIX = "KPULSE_AGGREGATOR_"
EXIT_BAD_SETTINGS = 2


class OneLineFormatter(logging.Formatter):
    """Keeps each event on one line: newlines in messages and tracebacks are escaped as ``\\n``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line."""
        return super().format(record).replace("\n", "\\n")


def describe_settings_error(exc: ValidationError) -> str:
    """One line per bad setting, naming the environment variable to fix."""
    lines = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        if not field:
            lines.append(f"invalid settings: {error['msg']}")
            continue
        variable = field if field.startswith("KPULSE_") else f"{ENV_PREFIX}{field.upper()}"
        lines.append(f"invalid setting {variable}: {error['msg']}")
    return "\n".join(lines)


def configure_logging(level: str) -> None:
    """Root logging to stderr at ``level``, one line per event (uvicorn's loggers included)."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def main() -> int:
    """Run the aggregator until it is stopped; the exit status."""
    try:
        settings: AggregatorSettings = get_settings()
    except ValidationError as exc:
        print(describe_settings_error(exc), file=sys.stderr)
        return EXIT_BAD_SETTINGS
    configure_logging(settings.log_level)
    if configured_token(settings) is None:
        log.warning("KPULSE_INGEST_TOKEN is unset: ingest accepts loopback clients only")
    target = (
        f"{settings.influx_url} database {settings.influx_database}"
        if settings.influx_api == "v1"
        else f"{settings.influx_url} bucket {settings.influx_bucket}"
    )
    log.info(
        "kpulse aggregator listening on %s://%s:%d, writing to InfluxDB %s API at %s",
        "https" if settings.tls_cert_file is not None else "http",
        settings.host,
        settings.port,
        settings.influx_api,
        target,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the one-line root handler configured above
        # A line per collector request every few seconds drowns the log; /metrics counts requests.
        access_log=settings.log_level == "DEBUG",
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
