"""``python -m aggregator``: read the settings, configure logging, serve the APIs with uvicorn.

Exit status 2 with one line per bad setting (naming its environment variable) when the settings are
invalid, 1 when the metrics API cannot be set up or a server cannot start; defaults listen on
127.0.0.1:8080 and write through the v1 API to http://127.0.0.1:8086, database ``kpulse`` (created when
missing). With ``KPULSE_AGGREGATOR_METRICS_API_PORT`` set, the same process and event loop also serve
``metrics.k8s.io`` over HTTPS to the Kubernetes API server (docs/deploy.md), re-reading its front-proxy
trust periodically; SIGTERM stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import tempfile
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from aggregator.api.app import create_app, create_metrics_api_app
from aggregator.api.deps import configured_token
from aggregator.api.front_proxy_trust import describe, keep_current
from aggregator.api.metrics_api_setup import MetricsApiListener, metrics_api_config, prepare_metrics_api
from aggregator.api.serving import GroupedServer, close_connections, serve_all
from aggregator.errors import AggregatorError
from aggregator.gc_tuning import tune_garbage_collector
from aggregator.settings import AggregatorSettings, get_settings

log = logging.getLogger("aggregator")

ENV_PREFIX = "KPULSE_AGGREGATOR_"
EXIT_BAD_SETTINGS = 2
EXIT_FAILED = 1


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
    tune_garbage_collector()
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
    # A line per collector request every few seconds drowns the log; /metrics counts requests.
    access_log = settings.log_level == "DEBUG"
    app = create_app(settings)
    configs = [
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,  # keep the one-line root handler configured above
            access_log=access_log,
            ssl_certfile=settings.tls_cert_file,
            ssl_keyfile=settings.tls_key_file,
        )
    ]
    listener: MetricsApiListener | None = None
    with contextlib.ExitStack() as cleanup:
        if settings.metrics_api_port is not None:
            try:
                # Private (0700) and removed at exit: the self-signed key and the front-proxy CA go here.
                workdir = Path(
                    cleanup.enter_context(tempfile.TemporaryDirectory(prefix="kpulse-metrics-api-"))
                )
                listener = prepare_metrics_api(settings, workdir)
            except (AggregatorError, OSError) as exc:
                log.error("the metrics API (KPULSE_AGGREGATOR_METRICS_API_PORT) cannot start: %s", exc)
                return EXIT_FAILED
            _log_metrics_api(listener, settings.metrics_api_requestheader_reload_seconds)
            metrics_api = create_metrics_api_app(
                app.state.aggregator, trust=listener.trust.current, authorizer=listener.authorizer
            )
            configs.append(metrics_api_config(metrics_api, listener, access_log=access_log))
        try:
            for config in configs:
                config.load()  # certificate and key errors surface here, before anything listens
        except OSError as exc:  # ssl.SSLError included
            log.error("cannot load the TLS certificate or key: %s", exc)
            return EXIT_FAILED
        servers = [GroupedServer(config) for config in configs]
        background = []
        if listener is not None:
            metrics_api_server = servers[-1]
            background.append(
                keep_current(
                    listener.trust,
                    period_seconds=settings.metrics_api_requestheader_reload_seconds,
                    metrics=app.state.aggregator.metrics,
                    on_ca_change=lambda: _reconnect_clients(metrics_api_server),
                )
            )
        stopped_cleanly = asyncio.run(serve_all(servers, background))
    return 0 if stopped_cleanly else EXIT_FAILED


def _reconnect_clients(server: uvicorn.Server) -> None:
    # A connection verified against a CA since removed must not carry on: its client handshakes again.
    closed = close_connections(server)
    if closed:
        log.info(
            "closed %d metrics API connection(s) verified against the previous front-proxy CA set", closed
        )


def _log_metrics_api(listener: MetricsApiListener, reload_seconds: float) -> None:
    log.info(
        "metrics.k8s.io for the Kubernetes API server on https://%s:%d (%s serving certificate); front proxy "
        "trusted from %s (read again every %g s): %s",
        listener.host,
        listener.port,
        "self-signed" if listener.self_signed else "configured",
        listener.trust.source.description,
        reload_seconds,
        describe(listener.trust.current()),
    )
    if listener.authorizer is None:
        log.warning(
            "KPULSE_AGGREGATOR_METRICS_API_INSECURE_SKIP_AUTHORIZATION is set: every user the API server "
            "names may read every node's and pod's metrics, whatever RBAC says (unsafe)"
        )
    else:
        log.info("metrics API users are authorized by SubjectAccessReviews at %s", listener.kubernetes_url)


if __name__ == "__main__":
    sys.exit(main())
