"""A private Docker engine that fault tests may stop and start, and ``python -m collector`` pointed at it.

``PrivateDockerd`` runs ``dockerd`` with its own data root, exec root (so its own managed ``containerd``),
pid file and socket, inside a network namespace of its own (``unshare --net``): ``--bridge=none`` makes
dockerd delete any interface named ``docker0`` it can see, which in the host's namespace would be the shared
engine's bridge. Nothing of the engine other tests use is touched, so stopping this one is safe. Its
containers have no network (``network_mode="none"``); the busybox image is imported from the host's
static busybox, as ``tests/conftest.py`` does for the shared engine.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests

from tests.conftest import _busybox_rootfs_tar, _find_busybox
from tests.helpers import stop_process, tail, wait_until

START_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 30.0
IMAGE = "kph11/busybox:latest"


@dataclass(slots=True)
class PrivateDockerd:
    """``dockerd`` under ``root`` (a short path: unix socket paths are limited to 107 bytes)."""

    root: Path
    live_restore: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def start(self) -> None:
        """Start (again, on the same data root) and wait until the API answers."""
        assert self.process is None or self.process.poll() is not None, "dockerd is already running"
        binary = shutil.which("dockerd")
        assert binary is not None, "dockerd not found"
        config = self.root / "daemon.json"
        config.write_text("{}")  # not the host's /etc/docker/daemon.json
        command = [
            "unshare",
            "--net",
            "--",
            binary,
            "--config-file",
            str(config),
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            str(self.root / "exec"),
            "--pidfile",
            str(self.root / "dockerd.pid"),
            "-H",
            self.url,
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
        ]
        if self.live_restore:
            command.append("--live-restore")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(
            self.answers, START_DEADLINE_SECONDS, lambda: f"private dockerd never answered:\n{tail(self.log)}"
        )

    def answers(self) -> bool:
        """Whether the API answers /_ping now."""
        assert self.process is not None
        assert self.process.poll() is None, f"private dockerd exited:\n{tail(self.log, 40)}"
        if not self.socket.exists():
            return False
        try:
            client = docker.DockerClient(base_url=self.url, version="1.41", timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (docker.errors.DockerException, requests.RequestException, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM and wait for dockerd to exit (SIGKILL after the deadline)."""
        if self.process is not None:
            stop_process(self.process, STOP_DEADLINE_SECONDS)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version="1.41", timeout=60)

    def import_busybox(self) -> str:
        """The busybox image, imported into this engine."""
        client = self.client()
        try:
            client.api.import_image_from_data(
                _busybox_rootfs_tar(_find_busybox()),
                repository=IMAGE.rsplit(":", 1)[0],
                tag="latest",
                changes=["ENV PATH=/bin", 'CMD ["sh"]'],
            )
        finally:
            client.close()
        return IMAGE

    def remove_everything(self) -> None:
        """Force-remove every container of this engine (it is ours alone)."""
        if self.process is None or self.process.poll() is not None:
            return
        client = self.client()
        try:
            for container in client.containers.list(all=True):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    container.remove(force=True)
        finally:
            client.close()


@dataclass(slots=True)
class CollectorProcess:
    """``python -m collector`` with ``env``, its combined output in ``log``."""

    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "collector"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def assert_running(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        assert code is None, f"collector exited with {code}:\n{tail(self.log, 60)}"

    def stop(self) -> int | None:
        if self.process is None:
            return None
        return stop_process(self.process, STOP_DEADLINE_SECONDS)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def collector_env(
    *, docker_url: str, aggregator_url: str, node: str, interval_seconds: float
) -> dict[str, str]:
    """The environment of a collector scraping ``docker_url`` and shipping to ``aggregator_url``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KPULSE_")}
    env.pop("DOCKER_HOST", None)
    env.update(
        {
            "DOCKER_HOST": docker_url,
            "KPULSE_COLLECTOR_DOCKER_URL": docker_url,
            "KPULSE_COLLECTOR_SOURCE": "docker",
            "KPULSE_COLLECTOR_NODE_NAME": node,
            "KPULSE_COLLECTOR_INTERVAL_SECONDS": str(interval_seconds),
            "KPULSE_COLLECTOR_AGGREGATOR_URL": aggregator_url,
            "KPULSE_COLLECTOR_RETRY_INITIAL_SECONDS": "0.2",
            "KPULSE_COLLECTOR_RETRY_MAX_SECONDS": "1",
        }
    )
    return env


def labelled_gauge(metrics_text: str, name: str, labels: str) -> float | None:
    """The value of ``name{labels}`` in Prometheus text (``labels`` exactly as rendered), or ``None``."""
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", metrics_text, re.MULTILINE)
    return float(found.group(1)) if found else None


@contextlib.contextmanager
def private_engine(*, live_restore: bool = False) -> Iterator[PrivateDockerd]:
    """A private engine in its own root (not started); stopped, emptied and removed afterwards."""
    root = private_root()
    dockerd = PrivateDockerd(root, live_restore=live_restore)
    try:
        yield dockerd
    finally:
        if dockerd.process is not None and dockerd.process.poll() is None:
            dockerd.remove_everything()
        dockerd.stop()
        remove_root(root)


def private_root() -> Path:
    """A short directory for a private engine (its socket path must stay under 107 bytes)."""
    root = Path(f"/tmp/kph11-{os.getpid()}-{os.urandom(3).hex()}")
    root.mkdir(mode=0o700)
    return root


def remove_root(root: Path) -> None:
    """Remove a stopped engine's directory; overlay mounts left by a crash are unmounted first."""
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        mountpoint = line.split()[1]
        if mountpoint.startswith(str(root)):
            subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
