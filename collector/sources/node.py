"""The node's own usage (the whole host, not only its containers) read from a proc filesystem.

The parsers are pure and take the file's text; ``read_node_sample`` is the only function that reads files.
In a container, mount the host's /proc read-only (e.g. at /host/proc) and pass that path: CPU, memory and
boot time are host-wide in any /proc, but the network is read from ``{proc}/1/net/dev`` because
``{proc}/net/dev`` shows the network namespace of the process that reads it, not the host's.

Usage::

    sample = read_node_sample(Path("/host/proc"), now_ns=time.time_ns())
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from collector.wire import NetworkCounters, NodeSample

log = logging.getLogger(__name__)

_NS_PER_SECOND = 1_000_000_000

# /proc/stat "cpu" columns: user nice system idle iowait irq softirq steal guest guest_nice. Busy time is
# user+nice+system+irq+softirq+steal; idle and iowait are not busy, and guest/guest_nice are already
# included in user/nice by the kernel, so adding them would count virtual-machine time twice.
_BUSY_CPU_COLUMNS = (0, 1, 2, 5, 6, 7)

VIRTUAL_INTERFACE_PREFIXES = (
    "veth",  # container end of a veth pair: its traffic also crosses a bridge and the uplink
    "docker",
    "br-",
    "cni",
    "flannel",
    "cali",
    "cilium",
    "lxc",
    "vxlan",
    "genev",
    "weave",
    "kube-",
    "nodelocaldns",
    "virbr",
    "vnet",
    "tun",
    "tap",
    "ifb",
    "dummy",
    "gre",
    "erspan",
    "sit",
    "ip6tnl",
    "ip_vti",
    "ip6_vti",
)
"""Interface name prefixes that carry no traffic of their own (it is also counted on a physical NIC)."""


def is_virtual_interface(name: str) -> bool:
    """Whether the node network total leaves this interface out (loopback, bridges, veths, tunnels)."""
    return name == "lo" or name.startswith(VIRTUAL_INTERFACE_PREFIXES)


@dataclass(frozen=True, slots=True)
class ProcStat:
    """What /proc/stat says about the node: busy CPU time (ns), boot time (ns since epoch), online CPUs."""

    cpu_usage_ns: int
    boot_time_ns: int | None
    online_cpus: int


def parse_proc_stat(text: str, *, clk_tck: int) -> ProcStat:
    """Busy CPU time in ns (jiffies of ``clk_tck`` per second), boot time in ns, and the online CPU count."""
    busy_jiffies: int | None = None
    boot_time_ns: int | None = None
    online_cpus = 0
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "cpu":
            columns = [int(v) for v in rest.split()]
            if len(columns) < 3:
                raise ValueError(f"/proc/stat cpu line has {len(columns)} columns: {line!r}")
            busy_jiffies = sum(columns[i] for i in _BUSY_CPU_COLUMNS if i < len(columns))
        elif key.startswith("cpu") and key[3:].isdigit():
            # Offline CPUs have no line, so this counts the online ones.
            online_cpus += 1
        elif key == "btime":
            boot_time_ns = int(rest) * _NS_PER_SECOND
    if busy_jiffies is None:
        raise ValueError("/proc/stat has no aggregate cpu line")
    return ProcStat(
        cpu_usage_ns=busy_jiffies * _NS_PER_SECOND // clk_tck,
        boot_time_ns=boot_time_ns,
        online_cpus=online_cpus,
    )


@dataclass(frozen=True, slots=True)
class MemInfo:
    """/proc/meminfo in bytes; ``available_bytes`` is ``None`` on kernels older than 3.14."""

    total_bytes: int
    free_bytes: int
    available_bytes: int | None

    @property
    def usage_bytes(self) -> int:
        """Memory in use in bytes, page cache included (MemTotal - MemFree)."""
        return max(self.total_bytes - self.free_bytes, 0)

    @property
    def working_set_bytes(self) -> int | None:
        """Memory that cannot be reclaimed without swapping, in bytes (MemTotal - MemAvailable)."""
        if self.available_bytes is None:
            return None
        return max(self.total_bytes - self.available_bytes, 0)


def parse_meminfo(text: str) -> MemInfo:
    """MemTotal, MemFree and MemAvailable of /proc/meminfo, converted from kB to bytes."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        # The kernel's "kB" is KiB; a few counters (HugePages_*) have no unit and are not read here.
        values[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    try:
        return MemInfo(
            total_bytes=values["MemTotal"],
            free_bytes=values["MemFree"],
            available_bytes=values.get("MemAvailable"),
        )
    except KeyError as exc:
        raise ValueError(f"/proc/meminfo has no {exc.args[0]}") from exc


def parse_net_dev(text: str) -> NetworkCounters:
    """Cumulative bytes/packets/errors/drops summed over the physical interfaces of a /proc/net/dev."""
    totals = [0] * 8
    for line in text.splitlines()[2:]:  # two header lines
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or is_virtual_interface(name):
            continue
        columns = [int(v) for v in rest.split()]
        if len(columns) < 12:
            raise ValueError(f"/proc/net/dev line has {len(columns)} columns: {line!r}")
        # Receive: bytes packets errs drop (0-3); transmit: bytes packets errs drop (8-11).
        for slot, column in enumerate((0, 1, 2, 3, 8, 9, 10, 11)):
            totals[slot] += columns[column]
    rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped = totals
    return NetworkCounters(
        rx_bytes_total=rx_bytes,
        tx_bytes_total=tx_bytes,
        rx_packets_total=rx_packets,
        tx_packets_total=tx_packets,
        rx_errors_total=rx_errors,
        tx_errors_total=tx_errors,
        rx_dropped_total=rx_dropped,
        tx_dropped_total=tx_dropped,
    )


def read_node_sample(proc_path: Path, *, now_ns: int, clk_tck: int | None = None) -> NodeSample:
    """The node's CPU (ns, millicores), memory (bytes) and network (cumulative) read from ``proc_path``."""
    stat = parse_proc_stat((proc_path / "stat").read_text(), clk_tck=clk_tck or os.sysconf("SC_CLK_TCK"))
    meminfo = parse_meminfo((proc_path / "meminfo").read_text())
    network: NetworkCounters | None
    try:
        network = parse_net_dev((proc_path / "1" / "net" / "dev").read_text())
    except OSError as exc:
        # Without access to PID 1's view (e.g. hidepid) the host network is unknown; CPU and memory still are.
        log.debug("node: cannot read %s/1/net/dev: %s", proc_path, exc)
        network = None
    return NodeSample(
        timestamp_ns=now_ns,
        boot_time_ns=stat.boot_time_ns,
        cpu_usage_nanoseconds_total=stat.cpu_usage_ns,
        cpu_capacity_millicores=stat.online_cpus * 1000 if stat.online_cpus else None,
        memory_usage_bytes=meminfo.usage_bytes,
        memory_working_set_bytes=meminfo.working_set_bytes,
        memory_capacity_bytes=meminfo.total_bytes,
        network=network,
    )
