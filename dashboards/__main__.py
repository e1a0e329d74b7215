"""``python -m dashboards build --out DIR`` writes the dashboards and provisioning files;
``python -m dashboards push --grafana-url URL --token TOKEN`` uploads them through Grafana's HTTP API."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import requests

from dashboards.errors import PushError
from dashboards.generate import Provisioning, dashboards, differences, output_files, write_files
from dashboards.push import GrafanaApi, push_all

TOKEN_ENV = "KPULSE_GRAFANA_TOKEN"  # noqa: S105 - the variable's name, not a token


def _provisioning_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Provisioning()
    parser.add_argument(
        "--influx-url",
        default=defaults.influx_url,
        help="InfluxDB 1.x URL as Grafana reaches it (%(default)s)",
    )
    parser.add_argument("--database", default=defaults.database, help="InfluxDB database (%(default)s)")
    parser.add_argument(
        "--min-interval",
        default=defaults.min_interval,
        help="smallest $__interval, the aggregator's resolution (%(default)s)",
    )


def _settings(args: argparse.Namespace) -> Provisioning:
    return Provisioning(influx_url=args.influx_url, database=args.database, min_interval=args.min_interval)


def _build(args: argparse.Namespace) -> int:
    files = output_files(_settings(args))
    out = Path(args.out)
    if args.check:
        problems = differences(out, files)
        for problem in problems:
            print(f"{out}/{problem}", file=sys.stderr)
        if problems:
            print(f"run: python -m dashboards build --out {out}", file=sys.stderr)
        return 1 if problems else 0
    write_files(out, files)
    for relative in sorted(files):
        print(out / relative)
    return 0


def _push(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"a Grafana token is needed: --token or {TOKEN_ENV}", file=sys.stderr)
        return 2
    with requests.Session() as session:
        api = GrafanaApi(args.grafana_url, token, session)
        try:
            results = push_all(api, dashboards(), _settings(args), with_datasource=not args.no_datasource)
        except PushError as exc:
            print(f"push failed: {exc}", file=sys.stderr)
            return 1
    for result in results:
        print(f"{result.uid}: version {result.version} {result.url or ''}".rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="write dashboard JSON and Grafana provisioning files")
    build.add_argument("--out", required=True, help="output folder, e.g. deploy/grafana")
    build.add_argument("--check", action="store_true", help="write nothing; exit 1 when DIR is out of date")
    _provisioning_arguments(build)
    build.set_defaults(run=_build)

    push = commands.add_parser("push", help="upload the dashboards through Grafana's HTTP API")
    push.add_argument("--grafana-url", required=True, help="e.g. http://localhost:3000")
    push.add_argument("--token", default="", help=f"service account token (or {TOKEN_ENV})")
    push.add_argument(
        "--no-datasource",
        action="store_true",
        help="do not create the InfluxDB datasource when it is missing",
    )
    _provisioning_arguments(push)
    push.set_defaults(run=_push)

    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
