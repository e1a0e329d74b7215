"""The Docker-host end-to-end scenario: containers with known load, real collector and aggregator, InfluxDB.

The scenario is built once and shared by every test in the e2e package (dashboards and query-API tests reuse
it): busybox containers burning a full core (on a CPU of its own, see ``CpuPlan``), burning under
``--cpus 0.5``, idling, holding 128 MiB, two containers of a Kubernetes-labelled pod (plus its sandbox)
and two of a compose project; then ``python -m aggregator`` and ``python -m collector`` as real
subprocesses at a 2 s interval, writing to a fresh InfluxDB database. The fixture returns once every
level has rate-bearing points, so tests start on steady data. When a test fails, the end of both services'
logs is attached to its report.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import docker
import pytest
import requests
from docker.models.containers import Container

from tests.helpers import (
    InfluxDatabases,
    InfluxV1,
    LabelledContainers,
    free_tcp_port,
    stop_process,
    tail,
    wait_until,
)

INTERVAL_SECONDS = 2
NODE_NAME = "e2e-node"
CLUSTER_NAME = "e2e"
DEFAULT_NAMESPACE = "default"
"""Namespace of plain containers without a compose label (the collector's default, set explicitly)."""
MEMORY_HELD_BYTES = 128 * 1024 * 1024
DB_MEMORY_LIMIT_BYTES = 64 * 1024 * 1024
START_DEADLINE_SECONDS = 60.0
STEADY_DEADLINE_SECONDS = 120.0
STOP_DEADLINE_SECONDS = 20.0
LOCK_DEADLINE_SECONDS = 420.0
"""How long to wait for another test run's scenario on this machine to finish (theirs takes ~1 to 5 min)."""

SLEEP_FOREVER = ["sleep", "1000000"]
BURN = ["sh", "-c", "while :; do :; done"]


def block_device_of(path: Path) -> str | None:
    """The whole block device (``/dev/vda``) holding ``path``, or None when it is not on one (tmpfs...)."""
    st_dev = path.stat().st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(st_dev)}:{os.minor(st_dev)}")
    if not sysfs.exists():
        return None
    device = sysfs.resolve()
    if (device / "partition").exists():
        device = device.parent
    node = Path("/dev") / device.name
    return str(node) if node.exists() else None


def blkio_accounting(path: Path) -> dict[str, list[dict[str, str | int]]]:
    """Docker run options that make cgroup v1 account block I/O to ``path``'s device.

    Newer kernels (seen on 6.18 with cgroup v1) leave ``blkio.throttle.io_service_bytes`` at 0 for a
    cgroup unless a throttle rule names the device, so a rule far above any real rate is set; it throttles
    nothing and makes the counters the collector reads count.
    """
    device = block_device_of(path)
    if device is None:
        return {}
    unlimited = {"Path": device, "Rate": 1 << 40}
    return {"device_read_bps": [unlimited], "device_write_bps": [unlimited]}


def hold_shm(mebibytes: int) -> list[str]:
    """A command that puts ``mebibytes`` MiB in /dev/shm (charged to the container) and then idles."""
    return ["sh", "-c", f"dd if=/dev/zero of=/dev/shm/held bs=1M count={mebibytes} && exec sleep 1000000"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The tags kpulse should write for a container."""

    namespace: str
    pod: str
    container: str


@dataclass(slots=True)
class Service:
    """A kpulse process started by the scenario, with its combined stdout/stderr log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 200) -> str:
        return tail(self.log, lines)

    def assert_running(self) -> None:
        code = self.process.poll()
        assert code is None, f"{self.name} exited with status {code}; log:\n{self.log_tail()}"

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after the deadline; returns the exit status."""
        return stop_process(self.process, STOP_DEADLINE_SECONDS)


@dataclass(slots=True)
class DockerHostScenario:
    """What e2e tests need to find the scenario's data; containers are known by the role they play."""

    influx_url: str
    database: str
    aggregator_url: str
    node: str
    cluster: str
    influx: InfluxV1
    containers: dict[str, Container]
    """role -> Docker container (``burner_full``, ``burner_limited``, ``idle``, ``memory_holder``,
    ``pod_sandbox``, ``pod_app``, ``pod_sidecar``, ``blog_web``, ``blog_db``)."""
    identities: dict[str, Identity]
    """Docker container name -> the tags kpulse should give it (the pod sandbox has none: not a container)."""
    pod_namespace: str
    pod_name: str
    services: dict[str, Service] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    """The environment both services were started with (tests reuse it for ``python -m collector --once``)."""

    def identity(self, role: str) -> Identity:
        return self.identities[self.containers[role].name]

    def logs(self) -> str:
        return "\n\n".join(
            f"----- {service.name} log ({service.log}) -----\n{service.log_tail()}"
            for service in self.services.values()
        )

    def assert_services_running(self) -> None:
        for service in self.services.values():
            service.assert_running()


_running: list[DockerHostScenario] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and _running:
        for service in _running[-1].services.values():
            report.sections.append((f"{service.name} log (last lines of {service.log})", service.log_tail()))


@dataclass(frozen=True, slots=True)
class CpuPlan:
    """Which CPUs the scenario uses: the full burner gets one to itself, everything else shares the rest.

    Without this, the collector, aggregator and the test itself wake up on the full burner's CPU now and
    then and take a few percent of it: the burner would truly use less than a core, and the test would
    be measuring the scheduler rather than kpulse.
    """

    burner: int
    rest: frozenset[int]

    @classmethod
    def for_this_machine(cls) -> CpuPlan:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            pytest.fail(f"the Docker-host scenario needs two CPUs (one for the full burner), this has {cpus}")
        return cls(burner=cpus[-1], rest=frozenset(cpus[:-1]))

    @property
    def rest_cpuset(self) -> str:
        return ",".join(str(cpu) for cpu in sorted(self.rest))


def _start_containers(
    started: LabelledContainers, scratch: Path, cpus: CpuPlan
) -> tuple[dict[str, Container], dict[str, Identity], str]:
    containers: dict[str, Container] = {}
    containers["burner_full"] = started.run("burner-full", BURN, cpuset_cpus=str(cpus.burner))
    containers["burner_limited"] = started.run(
        "burner-half", BURN, nano_cpus=500_000_000, cpuset_cpus=cpus.rest_cpuset
    )
    containers["idle"] = started.run("idle", SLEEP_FOREVER)
    containers["memory_holder"] = started.run("memhold", hold_shm(128), shm_size="256m")

    suffix = secrets.token_hex(3)
    pod_name = f"web-{suffix}-x7k2m"
    pod_labels = {
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.name": pod_name,
        "io.kubernetes.pod.uid": str(uuid.uuid4()),
    }
    sandbox = started.run(
        "shop-sandbox",
        SLEEP_FOREVER,
        labels={
            **pod_labels,
            "io.kubernetes.docker.type": "podsandbox",
            "io.kubernetes.container.name": "POD",
        },
    )
    containers["pod_sandbox"] = sandbox
    for role, name, command in (("pod_app", "app", hold_shm(32)), ("pod_sidecar", "sidecar", SLEEP_FOREVER)):
        containers[role] = started.run(
            f"shop-{name}",
            command,
            labels={
                **pod_labels,
                "io.kubernetes.docker.type": "container",
                "io.kubernetes.container.name": name,
            },
            network_mode=f"container:{sandbox.id}",
            shm_size="64m",
        )

    compose = {"com.docker.compose.project": "blog", "com.docker.compose.container-number": "1"}
    containers["blog_web"] = started.run(
        "blog-web", SLEEP_FOREVER, labels={**compose, "com.docker.compose.service": "web"}
    )
    data = scratch / "blog-db"
    data.mkdir()
    containers["blog_db"] = started.run(
        "blog-db",
        # Direct I/O reaches the block device inside the container's cgroup, so blkio counts it.
        [
            "sh",
            "-c",
            "dd if=/dev/zero of=/data/f bs=1M count=8 oflag=direct && "
            "dd if=/data/f of=/dev/null bs=1M iflag=direct && "
            "dd if=/dev/zero of=/dev/shm/held bs=1M count=16 && exec sleep 1000000",
        ],
        labels={**compose, "com.docker.compose.service": "db"},
        mem_limit=DB_MEMORY_LIMIT_BYTES,
        volumes={str(data): {"bind": "/data", "mode": "rw"}},
        **blkio_accounting(data),
    )

    identities: dict[str, Identity] = {}
    for role, container in containers.items():
        if role == "pod_sandbox":
            continue
        if role.startswith("pod_"):
            identities[container.name] = Identity("shop", pod_name, role.removeprefix("pod_"))
        elif role.startswith("blog_"):
            identities[container.name] = Identity("blog", container.name, container.name)
        else:
            identities[container.name] = Identity(DEFAULT_NAMESPACE, container.name, container.name)
    return containers, identities, pod_name


def _start_service(name: str, env: dict[str, str], log_dir: Path, cpus: CpuPlan) -> Service:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    # Set before the interpreter has started any thread, so every thread it makes inherits it.
    os.sched_setaffinity(process.pid, cpus.rest)
    return Service(name, process, log)


def _service_env(*, port: int, database: str, influx_url: str, token: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KPULSE_")}
    env.update(
        {
            "KPULSE_INGEST_TOKEN": token,
            "KPULSE_AGGREGATOR_HOST": "127.0.0.1",
            "KPULSE_AGGREGATOR_PORT": str(port),
            "KPULSE_AGGREGATOR_INFLUX_URL": influx_url,
            "KPULSE_AGGREGATOR_INFLUX_DATABASE": database,
            "KPULSE_AGGREGATOR_RESOLUTION_SECONDS": str(INTERVAL_SECONDS),
            "KPULSE_AGGREGATOR_CLUSTER_NAME": CLUSTER_NAME,
            "KPULSE_COLLECTOR_INTERVAL_SECONDS": str(INTERVAL_SECONDS),
            "KPULSE_COLLECTOR_AGGREGATOR_URL": f"http://127.0.0.1:{port}",
            "KPULSE_COLLECTOR_NODE_NAME": NODE_NAME,
            "KPULSE_COLLECTOR_DEFAULT_NAMESPACE": DEFAULT_NAMESPACE,
        }
    )
    return env


def _healthy(url: str, service: Service) -> bool:
    service.assert_running()
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _steady(scenario: DockerHostScenario) -> bool:
    """Every level has at least three points with a CPU rate: counters have become rates all the way up."""
    scenario.assert_services_running()
    for measurement in ("container", "pod", "namespace", "node", "cluster"):
        rows = scenario.influx.rows(f'SELECT count("cpu_usage_millicores") FROM "{measurement}"')
        if not rows or rows[0]["count"] < 3:
            return False
    return True


class _ScenarioLock:
    """One scenario at a time per machine: two test runs burning 1.5 cores each on two CPUs starve both.

    An ``flock`` on a file in the temp directory, so a run that dies releases it with its process.
    """

    path = Path(tempfile.gettempdir()) / "kpulse-e2e-scenario.lock"

    def __init__(self) -> None:
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        lock = self.path.open("a+")

        def taken() -> bool:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        def holder() -> str:
            lock.seek(0)
            return lock.read().strip() or "unknown"

        try:
            wait_until(
                taken,
                LOCK_DEADLINE_SECONDS,
                lambda: f"another e2e scenario ({holder()}) still holds {self.path}",
                every_seconds=1.0,
            )
        except BaseException:
            lock.close()
            raise
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        self._file = lock

    def release(self) -> None:
        if self._file is not None:
            self._file.truncate(0)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


@pytest.fixture(scope="package")
def docker_host_e2e(
    docker_client: docker.DockerClient,
    busybox_image: str,
    influx_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DockerHostScenario]:
    """The running scenario (see the module docstring), shared by the e2e package and torn down after it.

    Package scope, not session: the burners must not keep two cores busy while unrelated tests run.
    """
    scratch = tmp_path_factory.mktemp("e2e")
    started = LabelledContainers(docker_client, busybox_image)
    databases = InfluxDatabases(influx_url)
    scenario: DockerHostScenario | None = None
    cpus = CpuPlan.for_this_machine()
    own_cpus = os.sched_getaffinity(0)
    machine = _ScenarioLock()
    try:
        machine.acquire()
        os.sched_setaffinity(0, cpus.rest)
        containers, identities, pod_name = _start_containers(started, scratch, cpus)
        database = databases.create("e2e")
        port = free_tcp_port()
        aggregator_url = f"http://127.0.0.1:{port}"
        env = _service_env(
            port=port, database=database, influx_url=influx_url, token=secrets.token_urlsafe(24)
        )
        env["KPULSE_COLLECTOR_HEARTBEAT_FILE"] = str(scratch / "collector.heartbeat")
        scenario = DockerHostScenario(
            influx_url=influx_url,
            database=database,
            aggregator_url=aggregator_url,
            node=NODE_NAME,
            cluster=CLUSTER_NAME,
            influx=InfluxV1(influx_url, database),
            containers=containers,
            identities=identities,
            pod_namespace="shop",
            pod_name=pod_name,
            env=env,
        )
        _running.append(scenario)
        _start_services(scenario, scratch, cpus)
        yield scenario
    finally:
        os.sched_setaffinity(0, own_cpus)
        exit_codes: dict[str, int | None] = {}
        if scenario is not None:
            # Collector first, so that its last batch still finds the aggregator.
            for name in ("collector", "aggregator"):
                if name in scenario.services:
                    exit_codes[name] = scenario.services[name].stop()
            _running.remove(scenario)
        started.remove_all()
        databases.drop_all()
        machine.release()
    # Only reached when the scenario ran: an operator's SIGTERM must end both services cleanly. Dying of
    # the SIGTERM itself after a graceful shutdown is clean too (uvicorn re-raises it; systemd agrees).
    unclean = {name: code for name, code in exit_codes.items() if code not in (0, -signal.SIGTERM)}
    assert not unclean, f"exit status after SIGTERM: {unclean}\n{scenario.logs() if scenario else ''}"


def _start_services(scenario: DockerHostScenario, log_dir: Path, cpus: CpuPlan) -> None:
    aggregator = _start_service("aggregator", scenario.env, log_dir, cpus)
    scenario.services["aggregator"] = aggregator
    wait_until(
        lambda: _healthy(scenario.aggregator_url, aggregator),
        START_DEADLINE_SECONDS,
        lambda: f"aggregator never answered {scenario.aggregator_url}/healthz\n{scenario.logs()}",
        every_seconds=0.2,
    )
    scenario.services["collector"] = _start_service("collector", scenario.env, log_dir, cpus)
    wait_until(
        lambda: _steady(scenario),
        STEADY_DEADLINE_SECONDS,
        lambda: f"InfluxDB never got three rate-bearing points on every level\n{scenario.logs()}",
        every_seconds=1.0,
    )
