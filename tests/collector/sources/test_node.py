"""The node (/proc) source: parsers on a recorded proc root, and one read of this machine's real /proc."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from collector.sources.node import (
    is_virtual_interface,
    parse_meminfo,
    parse_net_dev,
    parse_proc_stat,
    read_node_sample,
)
from collector.wire import NetworkCounters

PROC = Path(__file__).parents[2] / "fixtures" / "proc" / "debian12-kernel6.18-2cpu"
RECORDED_CLK_TCK = 100  # `getconf CLK_TCK` on the recording host (see the fixture README)


def cpu_columns(stat_text: str) -> list[int]:
    line = next(line for line in stat_text.splitlines() if line.startswith("cpu "))
    return [int(v) for v in line.split()[1:]]


def meminfo_kib(text: str, key: str) -> int:
    line = next(line for line in text.splitlines() if line.startswith(f"{key}:"))
    return int(line.split()[1])


def net_dev_row(text: str, interface: str) -> list[int]:
    line = next(line for line in text.splitlines() if line.strip().startswith(f"{interface}:"))
    return [int(v) for v in line.split(":", 1)[1].split()]


# --- /proc/stat -------------------------------------------------------------------------------------------


def test_proc_stat_busy_time_boot_time_and_cpus() -> None:
    text = (PROC / "stat").read_text()
    user, nice, system, _idle, _iowait, irq, softirq, steal, *_guest = cpu_columns(text)
    stat = parse_proc_stat(text, clk_tck=RECORDED_CLK_TCK)
    assert stat.cpu_usage_ns == (user + nice + system + irq + softirq + steal) * (10**9 // RECORDED_CLK_TCK)
    btime = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("btime "))
    assert stat.boot_time_ns == btime * 10**9
    assert stat.online_cpus == 2  # the recording host had two CPUs (cpu0, cpu1)


def test_proc_stat_converts_jiffies_with_the_given_tick() -> None:
    stat = parse_proc_stat("cpu  250 0 0 1000 0 0 0 0 0 0\ncpu0 250 0 0 1000 0 0 0 0 0 0\n", clk_tck=250)
    assert stat.cpu_usage_ns == 10**9  # 250 jiffies at 250 Hz is one second


def test_guest_time_is_not_counted_twice() -> None:
    # The kernel already includes guest (column 9) in user and guest_nice (10) in nice.
    stat = parse_proc_stat("cpu  100 10 20 500 5 1 2 3 60 4\n", clk_tck=100)
    assert stat.cpu_usage_ns == (100 + 10 + 20 + 1 + 2 + 3) * 10**7


def test_proc_stat_of_an_old_kernel_without_steal() -> None:
    stat = parse_proc_stat("cpu  100 10 20 500\ncpu0 100 10 20 500\nbtime 1700000000\n", clk_tck=100)
    assert stat.cpu_usage_ns == 130 * 10**7
    assert stat.boot_time_ns == 1_700_000_000 * 10**9
    assert stat.online_cpus == 1


def test_proc_stat_without_cpu_line_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu line"):
        parse_proc_stat("intr 1 2 3\n", clk_tck=100)


# --- /proc/meminfo ----------------------------------------------------------------------------------------


def test_meminfo_usage_and_working_set() -> None:
    text = (PROC / "meminfo").read_text()
    total, free, available = (meminfo_kib(text, k) * 1024 for k in ("MemTotal", "MemFree", "MemAvailable"))
    meminfo = parse_meminfo(text)
    assert meminfo.total_bytes == total
    assert meminfo.usage_bytes == total - free
    assert meminfo.working_set_bytes == total - available
    assert meminfo.working_set_bytes < meminfo.usage_bytes  # page cache is in usage, not in the working set


def test_meminfo_of_a_kernel_without_memavailable() -> None:
    meminfo = parse_meminfo("MemTotal: 1000 kB\nMemFree: 400 kB\nHugePages_Total: 0\n")
    assert meminfo.usage_bytes == 600 * 1024
    assert meminfo.working_set_bytes is None


def test_meminfo_without_memtotal_is_refused() -> None:
    with pytest.raises(ValueError, match="MemTotal"):
        parse_meminfo("MemFree: 400 kB\n")


# --- /proc/net/dev ----------------------------------------------------------------------------------------


def test_net_dev_counts_only_the_physical_interface() -> None:
    text = (PROC / "1" / "net" / "dev").read_text()
    # Recorded with docker0, six veths, lo and two ifb devices next to the one NIC, eth0.
    eth0 = net_dev_row(text, "eth0")
    assert parse_net_dev(text) == NetworkCounters(
        rx_bytes_total=eth0[0],
        rx_packets_total=eth0[1],
        rx_errors_total=eth0[2],
        rx_dropped_total=eth0[3],
        tx_bytes_total=eth0[8],
        tx_packets_total=eth0[9],
        tx_errors_total=eth0[10],
        tx_dropped_total=eth0[11],
    )


NET_DEV_HEADER = "".join((PROC / "1" / "net" / "dev").read_text().splitlines(keepends=True)[:2])
KUBERNETES_NODE_NET_DEV = (
    NET_DEV_HEADER
    + """\
    lo: 9000 90 0 0 0 0 0 0 9000 90 0 0 0 0 0 0
  ens5: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0
  eth1: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0
cali1a2b3c4d5e6: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
flannel.1: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
  cni0: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
vxlan.calico: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
 tunl0: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
kube-ipvs0: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
nodelocaldns: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
cilium_host: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
lxc12ab34cd: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
docker0: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
br-0a1b2c3d4e5f: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
vethab12cd3: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
virbr0: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
  tap0: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
genev_sys_6081: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
"""
)
"""Made up for this test: interface names of a Kubernetes node with several CNIs; only ens5, eth1 are NICs."""


def test_net_dev_leaves_out_every_kind_of_virtual_interface() -> None:
    assert parse_net_dev(KUBERNETES_NODE_NET_DEV) == NetworkCounters(
        rx_bytes_total=1100,
        rx_packets_total=11,
        rx_errors_total=1,
        rx_dropped_total=2,
        tx_bytes_total=2200,
        tx_packets_total=22,
        tx_errors_total=3,
        tx_dropped_total=4,
    )


@pytest.mark.parametrize(
    ("name", "virtual"),
    [
        ("eth0", False),
        ("ens5", False),
        ("enp0s31f6", False),
        ("bond0", False),
        ("wlan0", False),
        ("lo", True),
        ("veth1622f31", True),
        ("docker0", True),
        ("br-0a1b2c3d4e5f", True),
        ("cni0", True),
        ("flannel.1", True),
        ("cali1a2b3c4d5e6", True),
        ("ifb0", True),
    ],
)
def test_is_virtual_interface(name: str, virtual: bool) -> None:
    assert is_virtual_interface(name) is virtual


# --- read_node_sample -------------------------------------------------------------------------------------


def test_read_node_sample_from_a_recorded_proc_root() -> None:
    sample = read_node_sample(PROC, now_ns=123, clk_tck=RECORDED_CLK_TCK)
    stat = parse_proc_stat((PROC / "stat").read_text(), clk_tck=RECORDED_CLK_TCK)
    meminfo = parse_meminfo((PROC / "meminfo").read_text())
    assert sample.timestamp_ns == 123
    assert sample.boot_time_ns == stat.boot_time_ns
    assert sample.cpu_usage_nanoseconds_total == stat.cpu_usage_ns
    assert sample.cpu_capacity_millicores == 2000
    assert sample.memory_capacity_bytes == meminfo.total_bytes
    assert sample.memory_usage_bytes == meminfo.usage_bytes
    assert sample.memory_working_set_bytes == meminfo.working_set_bytes
    assert sample.network == parse_net_dev((PROC / "1" / "net" / "dev").read_text())
    assert sample.cpu_allocatable_millicores is None  # only the kubelet knows allocatable


def test_unreadable_host_network_leaves_network_out(tmp_path: Path) -> None:
    shutil.copy(PROC / "stat", tmp_path / "stat")
    shutil.copy(PROC / "meminfo", tmp_path / "meminfo")
    sample = read_node_sample(tmp_path, now_ns=1, clk_tck=RECORDED_CLK_TCK)
    assert sample.network is None
    assert sample.memory_capacity_bytes is not None


def test_missing_proc_files_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_node_sample(tmp_path, now_ns=1)


def test_read_node_sample_from_this_machines_proc() -> None:
    now_ns = time.time_ns()
    sample = read_node_sample(Path("/proc"), now_ns=now_ns)
    assert sample.cpu_capacity_millicores == os.sysconf("SC_NPROCESSORS_ONLN") * 1000
    assert sample.memory_capacity_bytes == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert sample.boot_time_ns is not None
    uptime_seconds = float(Path("/proc/uptime").read_text().split()[0])
    # btime is whole seconds and uptime is read a little later, so allow a couple of seconds.
    assert abs((now_ns - sample.boot_time_ns) / 1e9 - uptime_seconds) < 3
    assert sample.cpu_usage_nanoseconds_total
    assert sample.memory_usage_bytes
    assert sample.memory_working_set_bytes
    assert sample.memory_working_set_bytes <= sample.memory_capacity_bytes
