"""Builds the images the deployment tests run: the Debian base, kpulse itself, and InfluxDB from Debian.

No image registry is reachable here, so the base is made by ``deploy/compose/make-base-image.sh``
(mmdebstrap → docker import, only when missing) and everything else is built on it. The kpulse build
context honours .dockerignore and carries the host's CA bundle at deploy/compose/build-ca/, where the
Dockerfile's builder stage looks, without writing into the work tree.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.utils.build import exclude_paths

from tests.deploy.tooling import REPO

BASE_IMAGE = os.environ.get("KPULSE_TEST_BASE_IMAGE", "kpulse-base/debian-python:bookworm")
KPULSE_IMAGE = os.environ.get("KPULSE_TEST_IMAGE", "kpulse-test/kpulse:smoke")
INFLUXDB_IMAGE = os.environ.get("KPULSE_TEST_INFLUXDB_IMAGE", "kpulse-test/influxdb:debian")
HOST_CA_BUNDLE = Path(os.environ.get("KPULSE_BUILD_CA_FILE", "/etc/ssl/certs/ca-certificates.crt"))
CA_IN_CONTEXT = "deploy/compose/build-ca/kpulse-test-host-ca.crt"
MAKE_BASE_IMAGE = REPO / "deploy" / "compose" / "make-base-image.sh"
BUILD_TIMEOUT_SECONDS = 1200


@dataclass(frozen=True)
class Built:
    """An image the tests built: its tag, how long the build took (s) and its size (bytes)."""

    tag: str
    seconds: float
    size_bytes: int


def ensure_base_image(tag: str = BASE_IMAGE) -> Built:
    """The Debian base, made by the project's script unless it already exists."""
    started = time.monotonic()
    completed = subprocess.run(
        [str(MAKE_BASE_IMAGE), tag],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"{MAKE_BASE_IMAGE.name} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}"
        )
    return Built(tag, time.monotonic() - started, _size(tag))


def context_tar(root: Path, extra: Mapping[str, Path]) -> bytes:
    """The build context of ``root`` as the engine would get it (.dockerignore applied), plus ``extra``."""
    ignore = root / ".dockerignore"
    patterns = [
        line.strip()
        for line in (ignore.read_text().splitlines() if ignore.is_file() else [])
        if line.strip() and not line.lstrip().startswith("#")
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative in sorted(exclude_paths(str(root), patterns)):
            tar.add(root / relative, arcname=relative, recursive=False)
        for arcname, source in extra.items():
            tar.add(source, arcname=arcname, recursive=False)
    return buffer.getvalue()


def build_kpulse_image(base: str = BASE_IMAGE, tag: str = KPULSE_IMAGE) -> Built:
    """The project's Dockerfile built on ``base``, with the host's CA bundle for pip when there is one."""
    extra = {CA_IN_CONTEXT: HOST_CA_BUNDLE} if HOST_CA_BUNDLE.is_file() else {}
    started = time.monotonic()
    with closing(docker.from_env(timeout=BUILD_TIMEOUT_SECONDS)) as client:
        _stream(
            client.api.build(
                fileobj=io.BytesIO(context_tar(REPO, extra)),
                custom_context=True,
                tag=tag,
                buildargs={"BASE_IMAGE": base},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            ),
            what=f"the kpulse image on {base}",
        )
    return Built(tag, time.monotonic() - started, _size(tag))


def build_influxdb_image(base: str = BASE_IMAGE, tag: str = INFLUXDB_IMAGE) -> Built:
    """InfluxDB from Debian's package (deploy/compose/influxdb/Dockerfile) on ``base``."""
    started = time.monotonic()
    with closing(docker.from_env(timeout=BUILD_TIMEOUT_SECONDS)) as client:
        _stream(
            client.api.build(
                path=str(REPO / "deploy" / "compose" / "influxdb"),
                tag=tag,
                buildargs={"BASE_IMAGE": base},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            ),
            what=f"the InfluxDB image on {base}",
        )
    return Built(tag, time.monotonic() - started, _size(tag))


def _stream(chunks: Iterable[dict[str, Any]], *, what: str) -> None:
    log: list[str] = []
    for chunk in chunks:
        if "stream" in chunk:
            log.append(chunk["stream"])
        if "error" in chunk:
            raise AssertionError(f"building {what} failed: {chunk['error']}\n{''.join(log)[-6000:]}")


def _size(tag: str) -> int:
    with closing(docker.from_env()) as client:
        size: int = client.images.get(tag).attrs["Size"]
        return size
