"""Paths and command-line tools the deployment tests use: kubectl's kustomize, docker compose, checkov.

Each finder says exactly what is missing and how ``./scripts/test`` installs it; a tool that cannot run here
fails the tests that need it instead of passing them silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from aggregator.settings import AggregatorSettings
from collector.settings import CollectorSettings

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
GRAFANA_DIR = REPO / "deploy" / "grafana"
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_TEST_OVERRIDE = REPO / "deploy" / "compose" / "test.yml"

MIN_KUSTOMIZE_MAJOR = 4
"""The manifests use ``labels`` and inline ``patches`` (kustomize v4+, i.e. kubectl 1.21 and later)."""

CHECKOV_ENV = "KPULSE_CHECKOV"
CHECKOV_DEFAULT = REPO / ".kpulse" / "tools" / "checkov" / "bin" / "checkov"

NON_SETTINGS_ENV = {"NODE_IP": "collector/sources/kubelet.py builds the default kubelet URL from it"}
"""Variables the services read that are not settings fields."""


def kustomize_targets() -> list[Path]:
    """Every directory under deploy/kubernetes with a kustomization (the default install, base, overlays)."""
    return sorted(path.parent for path in KUBERNETES_DIR.rglob("kustomization.yaml"))


def target_id(path: Path) -> str:
    """A short test id for a kustomize directory: ``.``, ``base``, ``overlays/metrics-api``."""
    return str(path.relative_to(KUBERNETES_DIR))


@cache
def kubectl() -> str:
    """The kubectl binary, known to embed kustomize v4 or later; skips with the reason otherwise."""
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip(
            "kubectl is not installed: nothing here can render kustomizations (./scripts/test installs it)"
        )
    completed = subprocess.run(
        [found, "version", "--client", "--output=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if completed.returncode != 0:
        pytest.skip(f"kubectl cannot run here: {completed.stderr.strip()[:300]}")
    version = json.loads(completed.stdout).get("kustomizeVersion", "")
    match = re.match(r"v?(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_KUSTOMIZE_MAJOR:
        pytest.skip(
            f"kubectl at {found} embeds kustomize {version or 'of unknown version'}; the manifests need "
            f"v{MIN_KUSTOMIZE_MAJOR} or later (kubectl 1.21+)"
        )
    return found


@cache
def render(directory: Path) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize DIRECTORY`` as a tuple of objects; fails with kustomize's message."""
    completed = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    if completed.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory.relative_to(REPO)} failed:\n{completed.stderr.strip()}")
    return tuple(doc for doc in yaml.safe_load_all(completed.stdout) if doc)


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    """The one object of ``kind`` named ``name``; fails when it is absent or ambiguous."""
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_templates(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) for every Deployment, DaemonSet and StatefulSet."""
    for obj in objects:
        if obj["kind"] in {"Deployment", "DaemonSet", "StatefulSet"}:
            yield obj, obj["spec"]["template"]


def settings_env_names() -> dict[str, type[BaseSettings]]:
    """Every environment variable the services' settings classes read, mapped to the class."""
    names: dict[str, type[BaseSettings]] = {}
    for cls, prefix in ((CollectorSettings, "KPULSE_COLLECTOR_"), (AggregatorSettings, "KPULSE_AGGREGATOR_")):
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names.update({choice: cls for choice in alias.choices if isinstance(choice, str)})
            elif isinstance(alias, str):
                names[alias] = cls
            else:
                names[f"{prefix}{name.upper()}"] = cls
    return names


@cache
def compose_command() -> tuple[str, ...]:
    """``docker compose`` (v2 plugin) when present, else ``docker-compose`` (v1); fails when neither is."""
    if shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60, check=False)
        if probe.returncode == 0:
            return ("docker", "compose")
    if shutil.which("docker-compose") is not None:
        return ("docker-compose",)
    pytest.fail(
        "neither `docker compose` nor `docker-compose` is installed (./scripts/test installs docker-compose)"
    )


@dataclass
class Compose:
    """One compose project built from docker-compose.yml (plus overrides), isolated from the caller's env.

    Variables of the calling environment that the compose file could interpolate (``KPULSE_*``,
    ``GRAFANA_*``) are dropped and a given empty env file replaces ``.env``, so a developer's settings never
    leak into a test; ``variables`` are what the test sets.
    """

    project: str
    env_file: Path
    variables: Mapping[str, str]
    files: tuple[Path, ...] = (COMPOSE_FILE,)
    timeout_seconds: float = 600.0
    environment: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KPULSE_", "GRAFANA_"))}
        self.environment = {**base, **self.variables}

    def command(self, *args: str) -> list[str]:
        """The full command line for ``args``."""
        files = [arg for path in self.files for arg in ("--file", str(path))]
        return [
            *compose_command(),
            "--project-name",
            self.project,
            "--project-directory",
            str(REPO),
            "--env-file",
            str(self.env_file),
            *files,
            *args,
        ]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs ``compose ARGS``; with ``check``, fails with compose's output when it exits non-zero."""
        completed = subprocess.run(
            self.command(*args),
            cwd=REPO,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=self.timeout_seconds,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"`{' '.join(args)}` exited {completed.returncode}:\n{completed.stdout[-3000:]}\n"
                f"{completed.stderr[-3000:]}"
            )
        return completed

    def config(self) -> dict[str, Any]:
        """The resolved configuration (``compose config``) as a dict."""
        loaded: dict[str, Any] = yaml.safe_load(self.run("config").stdout)
        return loaded

    def published_port(self, service: str, port: int) -> int:
        """The host port that ``service``'s ``port`` is published on."""
        answer = self.run("port", service, str(port)).stdout.strip()
        return int(answer.rsplit(":", 1)[1])

    def logs(self) -> str:
        """The last lines of every service's log (for failure messages)."""
        completed = self.run("logs", "--no-color", "--tail", "60", check=False)
        return completed.stdout[-12000:] + completed.stderr[-2000:]


def checkov() -> str:
    """The checkov executable: ``$KPULSE_CHECKOV``, the tool venv ./scripts/test makes, or ``PATH``."""
    configured = os.environ.get(CHECKOV_ENV)
    candidates = [Path(configured)] if configured else [CHECKOV_DEFAULT]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("checkov")
    if found is not None:
        return found
    pytest.fail(
        f"checkov not found at {candidates[0]} nor on PATH: ./scripts/test installs it into its own"
        f" virtualenv (it pins versions that conflict with the project's); or set {CHECKOV_ENV}"
    )
