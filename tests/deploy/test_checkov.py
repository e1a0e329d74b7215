"""checkov over the deployment: deploy/, the Dockerfiles, docker-compose.yml and .env.example.

No check may fail. A check that cannot apply is skipped in place (a ``checkov:skip`` comment in a Dockerfile,
a ``checkov.io/skip<n>`` annotation on a Kubernetes object) with its reason written next to it; the test
rejects a skip without one. checkov runs offline (``--skip-download``) from its own virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.deploy.tooling import KUBERNETES_DIR, REPO, checkov

MIN_REASON_CHARS = 20


def run_checkov(*args: str) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per framework that found something to check)."""
    completed = subprocess.run(
        [checkov(), *args, "--skip-download", "--output", "json"],
        cwd=REPO,
        # checkov's forked workers lose its shared mapping now and then (BrokenPipeError, exit 2) when
        # several kustomizations are rendered; in-process runs are reliable and take seconds here.
        env={**os.environ, "CHECKOV_PARALLELIZATION_TYPE": "none"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # Exit 1 means failed checks, which the JSON lists; anything else is checkov itself failing.
    if completed.returncode not in (0, 1) or not completed.stdout.strip():
        pytest.fail(f"checkov {' '.join(args)} exited {completed.returncode}:\n{completed.stderr[-3000:]}")
    loaded = json.loads(completed.stdout)
    reports: list[dict[str, Any]] = loaded if isinstance(loaded, list) else [loaded]
    return [r for r in reports if "check_type" in r]


def describe(check: dict[str, Any]) -> str:
    return f"{check['check_id']} {check['check_name']} — {check['resource']} in {check['file_path']}"


def assert_clean(reports: list[dict[str, Any]], frameworks: set[str]) -> None:
    assert {r["check_type"] for r in reports} >= frameworks
    failed = [describe(c) for r in reports for c in r["results"].get("failed_checks", [])]
    assert failed == [], "\n".join(failed)
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["check_type"]
        for check in report["results"].get("skipped_checks", []):
            reason = check["check_result"].get("suppress_comment") or ""
            assert len(reason.strip()) >= MIN_REASON_CHARS, f"skipped without a reason: {describe(check)}"


def test_kubernetes_manifests_and_every_rendered_kustomization() -> None:
    reports = run_checkov("--directory", str(KUBERNETES_DIR), "--framework", "kubernetes", "kustomize")
    assert_clean(reports, {"kubernetes", "kustomize"})
    assert sum(r["summary"]["passed"] for r in reports) > 0


def test_dockerfiles_compose_and_every_deploy_file_for_secrets() -> None:
    files = sorted(
        p.relative_to(REPO)
        for p in [
            REPO / "Dockerfile",
            REPO / "docker-compose.yml",
            REPO / ".env.example",
            *(p for p in (REPO / "deploy").rglob("*") if p.is_file()),
        ]
    )
    reports = run_checkov(
        *(arg for path in files for arg in ("--file", str(path))), "--framework", "dockerfile", "secrets"
    )
    assert_clean(reports, {"dockerfile"})
    scanned = {c["file_path"].lstrip("/") for r in reports for c in r["results"].get("passed_checks", [])}
    assert {"Dockerfile", "deploy/compose/influxdb/Dockerfile"} <= scanned
