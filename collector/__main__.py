"""``python -m collector``: run the node agent, or ``--once`` to print one scrape as JSON lines and exit."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

import orjson
import requests
from pydantic import ValidationError

from collector import heartbeat
from collector.agent import Agent
from collector.errors import SourceError
from collector.points import batch_points
from collector.settings import CollectorSettings, describe_settings_error, get_settings
from collector.shipper import Shipper
from collector.sources import Source

log = logging.getLogger("collector")


class CaPinnedSession(requests.Session):
    """A session that verifies servers against ``ca_file`` only, whatever the environment says.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override ``Session.verify``; many base images set
    them, which would silently swap the aggregator's CA for the system bundle (and fail to connect).
    """

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.verify = ca_file

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
        """The environment's settings, with ``verify`` pinned to the CA file."""
        merged = super().merge_environment_settings(*args, **kwargs)
        merged["verify"] = self.verify
        return merged


def choose_source(settings: CollectorSettings) -> str:
    """``docker`` or ``kubelet``: ``auto`` means kubelet inside a Kubernetes pod, Docker elsewhere."""
    if settings.source != "auto":
        return settings.source
    return "kubelet" if os.environ.get("KUBERNETES_SERVICE_HOST") else "docker"


def build_source(settings: CollectorSettings) -> Source:
    """The configured source (each reports the node's own usage too: kubelet stats or the host's /proc)."""
    if choose_source(settings) == "kubelet":
        from collector.sources.kubelet import KubeletSource  # noqa: PLC0415 - only needed in a cluster

        return KubeletSource.from_settings(settings)
    from collector.sources.docker import DockerSource  # noqa: PLC0415 - only needed on Docker hosts

    return DockerSource.from_settings(settings)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m collector", description=__doc__)
    parser.add_argument("--once", action="store_true", help="print one scrape as JSON lines and exit")
    parser.add_argument(
        "--check-heartbeat",
        action="store_true",
        help="exit 0 when the running agent's heartbeat file is fresh (liveness probe), 1 otherwise",
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(describe_settings_error(exc, env_prefix="KPULSE_COLLECTOR_"), file=sys.stderr)
        return 2
    if args.check_heartbeat:
        return _check_heartbeat(settings)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # apscheduler logs two INFO lines per run; a scrape every 10 s would drown the useful lines.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    if args.once:
        try:
            source = build_source(settings)
        except SourceError as exc:
            log.error("cannot start: %s", exc)
            return 1
        try:
            return _print_once(settings, source)
        finally:
            source.close()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    waited = _build_source_patiently(settings, stop)
    if waited is None:
        return 0
    try:
        return _run(settings, waited, stop)
    finally:
        waited.close()


def _build_source_patiently(settings: CollectorSettings, stop: threading.Event) -> Source | None:
    """The source, retried with backoff while it cannot be reached; ``None`` when stopped meanwhile.

    A node agent started before its engine (boot order, a dockerd restart) must wait for it, not exit.
    """
    backoff = settings.retry_initial_seconds
    while True:
        try:
            return build_source(settings)
        except SourceError as exc:
            log.warning("cannot reach the source yet: %s; retrying in %gs", exc, backoff)
        if stop.wait(backoff):
            return None
        backoff = min(backoff * 2, settings.retry_max_seconds)


def _check_heartbeat(settings: CollectorSettings) -> int:
    if settings.heartbeat_file is None:
        print("KPULSE_COLLECTOR_HEARTBEAT_FILE is not set: there is no heartbeat to check", file=sys.stderr)
        return 1
    reason = heartbeat.problem(
        settings.heartbeat_file, max_age_seconds=heartbeat.max_age_seconds(settings.interval_seconds)
    )
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    return 0


def _print_once(settings: CollectorSettings, source: Source) -> int:
    agent = Agent(
        source,
        lambda batch: None,
        node_name=settings.node_name,
        interval_seconds=settings.interval_seconds,
    )
    try:
        batch = agent.scrape_once()
    except SourceError as exc:
        log.error("scrape failed: %s", exc)
        return 1
    out = sys.stdout.buffer
    try:
        for point in batch_points(batch):
            out.write(orjson.dumps(point) + b"\n")
        out.flush()
    except BrokenPipeError:
        # The reader (``| head``) has seen enough; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _run(settings: CollectorSettings, source: Source, stop: threading.Event) -> int:
    token = settings.ingest_token.get_secret_value() if settings.ingest_token else None
    if token is None:
        log.warning("KPULSE_INGEST_TOKEN is unset: only an aggregator on this host (loopback) will accept us")
    session = (
        requests.Session()
        if settings.aggregator_ca_file is None
        else CaPinnedSession(str(settings.aggregator_ca_file))
    )
    shipper = Shipper(
        session,
        url=str(settings.aggregator_url),
        token=token,
        timeout_seconds=settings.ship_timeout_seconds,
        max_batches=settings.buffer_max_batches,
        retry_initial_seconds=settings.retry_initial_seconds,
        retry_max_seconds=settings.retry_max_seconds,
    )
    shipper.start()
    agent = Agent(
        source,
        shipper.submit,
        node_name=settings.node_name,
        interval_seconds=settings.interval_seconds,
        heartbeat_file=settings.heartbeat_file,
    )
    agent.run_until(stop)
    log.info("stopping: delivering %d buffered batches", shipper.buffered)
    shipper.close(timeout_seconds=settings.ship_timeout_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
