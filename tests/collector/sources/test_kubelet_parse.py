"""The kubelet parser against every recorded capture, and the Kubernetes rules it applies.

For each fixture folder, the expected samples are computed here by walking the raw JSON with plain dict
lookups and hand-written tables (quantities, workloads, the node's NIC), never with the parser's helpers,
and compared with what the parser emits, field by field, both ways (a field the test expects to be absent
must be ``None`` in the sample).
"""

from __future__ import annotations

import calendar
import copy
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.sources.kubelet_models import Pod, PodSpec
from collector.sources.kubelet_parse import (
    NodeMismatchError,
    Resources,
    effective_pod_amount,
    is_physical_interface,
    parse_scrape,
    pod_resources,
    runtime_container_id,
    workload_of,
)
from collector.wire import ContainerSample, NetworkCounters, NodeSample, PodSample

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "kubelet"
FIXTURE_DIRS = sorted(path.parent for path in FIXTURES.glob("*/stats-summary.json"))
SCRAPED_AT_NS = 1_900_000_000 * 10**9

# Quantities of the captures, converted by hand (a new capture with new values extends these tables).
CPU_MILLICORES = {
    "5m": 5,
    "40m": 40,
    "80m": 80,
    "100m": 100,
    "200m": 200,
    "250m": 250,
    "500m": 500,
    "7910m": 7910,
    "8": 8000,
    "10": 10_000,
}
MEMORY_BYTES = {
    "5M": 5_000_000,
    "15Mi": 15 * 1024 * 1024,
    "30Mi": 30 * 1024 * 1024,
    "50Mi": 50 * 1024 * 1024,
    "70Mi": 70 * 1024 * 1024,
    "100Mi": 100 * 1024 * 1024,
    "170Mi": 170 * 1024 * 1024,
    "200Mi": 200 * 1024 * 1024,
    "16098852Ki": 16098852 * 1024,
    "31127824Ki": 31127824 * 1024,
    "32144656Ki": 32144656 * 1024,
}

# What owns every pod of every capture, by hand from the pods' ownerReferences and names.
WORKLOADS: dict[str, dict[str, tuple[str, str]]] = {
    "duckboat-01": {
        "speaker-cpxhz": ("speaker", "DaemonSet"),
        "seashell-ptsqm": ("seashell", "DaemonSet"),
        "nginx-ingress-default-backend-5b967cf596-pp4m9": ("nginx-ingress-default-backend", "Deployment"),
        "controller-5c9894b5cd-r66xh": ("controller", "Deployment"),
        "honeycomb-agent-59mqh": ("honeycomb-agent", "DaemonSet"),
        "grafana-7db5dff8ff-vwrnf": ("grafana", "Deployment"),
        "kube-proxy-cxkwh": ("kube-proxy", "DaemonSet"),
        "calico-node-h2bjp": ("calico-node", "DaemonSet"),
        "kuard-6b65d9d8b5-44bbs": ("kuard", "Deployment"),
        "phpmyadmin-54c7cdbdc7-8qnbr": ("phpmyadmin", "Deployment"),
        "nginx-ingress-controller-86cd89648c-dkmjf": ("nginx-ingress-controller", "Deployment"),
    },
    "minikube-1.33": {
        "e2e-scraper-cbf584747-n8k6s": ("e2e-scraper", "Deployment"),
        "e2e-failjob-gk6sb": ("e2e-failjob", "Job"),
        "e2e-failjob-wz7qf": ("e2e-failjob", "Job"),
        "e2e-failjob-4hk6r": ("e2e-failjob", "Job"),
        "e2e-failjob-td77b": ("e2e-failjob", "Job"),
        "e2e-statefulset-0": ("e2e-statefulset", "StatefulSet"),
        "e2e-statefulset-1": ("e2e-statefulset", "StatefulSet"),
        "kube-apiserver-datagen-1-33": ("kube-apiserver-datagen-1-33", "Pod"),
        "kube-controller-manager-datagen-1-33": ("kube-controller-manager-datagen-1-33", "Pod"),
        "kube-scheduler-datagen-1-33": ("kube-scheduler-datagen-1-33", "Pod"),
        "etcd-datagen-1-33": ("etcd-datagen-1-33", "Pod"),
        "storage-provisioner": ("storage-provisioner", "Pod"),
        "e2e-deployment-6d49cb8b4f-24458": ("e2e-deployment", "Deployment"),
        "e2e-deployment-6d49cb8b4f-95tn6": ("e2e-deployment", "Deployment"),
        "kindnet-xdhkr": ("kindnet", "DaemonSet"),
        "e2e-daemonset-9xfgm": ("e2e-daemonset", "DaemonSet"),
        "e2e-hpa-87b6cf96-2rdfp": ("e2e-hpa", "Deployment"),
        "e2e-cronjob-29371389-6qx6l": ("e2e-cronjob", "CronJob"),
        "metrics-server-cdc7dfdcd-rcpkb": ("metrics-server", "Deployment"),
        "e2e-container-creating": ("e2e-container-creating", "Pod"),
        "e2e-kube-state-metrics-64cd7876b6-rstrl": ("e2e-kube-state-metrics", "Deployment"),
        "kube-proxy-xgf96": ("kube-proxy", "DaemonSet"),
        "coredns-674b8bbfcf-lj26m": ("coredns", "Deployment"),
    },
}

# The node's own NICs, read off each capture's interface list by hand.
NODE_NICS = {"duckboat-01": ["ens160"], "minikube-1.33": ["eth0"]}

# Pods of the captures that run nothing (finished Jobs, a container in CrashLoopBackOff).
NOT_RUNNING = {
    "duckboat-01": set[str](),
    "minikube-1.33": {
        "e2e-failjob-gk6sb",
        "e2e-failjob-wz7qf",
        "e2e-failjob-4hk6r",
        "e2e-failjob-td77b",
        "e2e-cronjob-29371389-6qx6l",
        "e2e-container-creating",
    },
}


@dataclass(frozen=True)
class Capture:
    name: str
    node: str
    summary_bytes: bytes
    pods_bytes: bytes
    node_bytes: bytes | None
    summary: dict[str, Any]
    pods: dict[str, Any]
    nodes: dict[str, Any] | None


def load(folder: Path) -> Capture:
    summary_bytes = (folder / "stats-summary.json").read_bytes()
    pods_bytes = (folder / "pods.json").read_bytes()
    node_bytes: bytes | None = None
    if (folder / "nodes.json").exists():
        node_bytes = (folder / "nodes.json").read_bytes()
    elif (folder / "nodes.yaml").exists():
        # kubectl printed it as YAML; the API server would send the same document as JSON.
        node_bytes = json.dumps(yaml.safe_load((folder / "nodes.yaml").read_text())).encode()
    summary = json.loads(summary_bytes)
    return Capture(
        name=folder.name,
        node=summary["node"]["nodeName"],
        summary_bytes=summary_bytes,
        pods_bytes=pods_bytes,
        node_bytes=node_bytes,
        summary=summary,
        pods=json.loads(pods_bytes),
        nodes=json.loads(node_bytes) if node_bytes is not None else None,
    )


CAPTURES = [load(folder) for folder in FIXTURE_DIRS]


@pytest.fixture(params=CAPTURES, ids=[capture.name for capture in CAPTURES])
def capture(request: pytest.FixtureRequest) -> Capture:
    return request.param  # type: ignore[no-any-return]


def test_every_fixture_folder_is_covered() -> None:
    assert {capture.name for capture in CAPTURES} == set(WORKLOADS) == set(NODE_NICS) == set(NOT_RUNNING)


# --- independent expectations -----------------------------------------------------------------------------


def epoch_ns(text: str) -> int:
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    assert match is not None, text
    moment = datetime.fromisoformat(match[1] + ("+00:00" if match[3] == "Z" else match[3]))
    return calendar.timegm(moment.utctimetuple()) * 10**9 + int((match[2] or "").ljust(9, "0")[:9])


def dig(raw: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(raw, dict) or key not in raw:
            return None
        raw = raw[key]
    return raw


def quantity(table: dict[str, int], raw_resources: dict[str, Any] | None, kind: str, name: str) -> int | None:
    text = dig(raw_resources, kind, name)
    return None if text is None else table[text]


def summed(interfaces: list[dict[str, Any]]) -> dict[str, int | None] | None:
    totals: dict[str, int | None] = dict.fromkeys(NetworkCounters.model_fields)
    for wire_name, raw_name in [
        ("rx_bytes_total", "rxBytes"),
        ("tx_bytes_total", "txBytes"),
        ("rx_errors_total", "rxErrors"),
        ("tx_errors_total", "txErrors"),
    ]:
        values = [interface.get(raw_name) for interface in interfaces]
        totals[wire_name] = None if not values or None in values else sum(values)
    return None if all(value is None for value in totals.values()) else totals


def statuses_of(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    keys = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")
    return {status["name"]: status for key in keys for status in pod["status"].get(key, [])}


def specs_of(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for key in ("initContainers", "containers") for c in pod["spec"].get(key, [])}


def expected_samples(cap: Capture) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pods_by_uid = {pod["metadata"]["uid"]: pod for pod in cap.pods["items"]}
    containers: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    for pod_stats in cap.summary["pods"]:
        ref = pod_stats["podRef"]
        pod = pods_by_uid[ref["uid"]]
        workload, kind = WORKLOADS[cap.name][ref["name"]]
        statuses, specs = statuses_of(pod), specs_of(pod)
        names = [c["name"] for c in pod_stats.get("containers", [])]
        assert len(names) == len(set(names)), "a capture with a container listed twice needs its own test"
        emitted = 0
        for stats in pod_stats.get("containers", []):
            status = statuses[stats["name"]]
            if "running" not in status.get("state", {}):
                continue
            emitted += 1
            resources = specs[stats["name"]].get("resources")
            fs_parts = [dig(stats, part, "usedBytes") for part in ("rootfs", "logs")]
            row: dict[str, Any] = dict.fromkeys(ContainerSample.model_fields)
            row.update(
                container_id=status["containerID"].split("://", 1)[1],
                started_at_ns=epoch_ns(stats["startTime"]),
                timestamp_ns=epoch_ns(stats["cpu"]["time"]),
                namespace=ref["namespace"],
                pod=ref["name"],
                container=stats["name"],
                workload=workload,
                workload_kind=kind,
                cpu_usage_nanoseconds_total=dig(stats, "cpu", "usageCoreNanoSeconds"),
                cpu_request_millicores=quantity(CPU_MILLICORES, resources, "requests", "cpu"),
                cpu_limit_millicores=quantity(CPU_MILLICORES, resources, "limits", "cpu"),
                memory_usage_bytes=dig(stats, "memory", "usageBytes"),
                memory_working_set_bytes=dig(stats, "memory", "workingSetBytes"),
                memory_rss_bytes=dig(stats, "memory", "rssBytes"),
                memory_request_bytes=quantity(MEMORY_BYTES, resources, "requests", "memory"),
                memory_limit_bytes=quantity(MEMORY_BYTES, resources, "limits", "memory"),
                restart_count=status.get("restartCount"),
                fs_usage_bytes=sum(part for part in fs_parts if part is not None)
                if any(part is not None for part in fs_parts)
                else None,
                fs_capacity_bytes=dig(stats, "rootfs", "capacityBytes"),
            )
            containers.append(row)
        if not emitted:
            continue
        network = pod_stats.get("network")
        pod_row: dict[str, Any] = dict.fromkeys(PodSample.model_fields)
        pod_row.update(
            namespace=ref["namespace"],
            pod=ref["name"],
            pod_id=ref["uid"],
            timestamp_ns=epoch_ns(network["time"]),
            workload=workload,
            workload_kind=kind,
            labels=pod["metadata"].get("labels") or None,
            # A host-network pod's counters are the node's, not the pod's.
            network=None
            if pod["spec"].get("hostNetwork")
            else summed(network.get("interfaces") or [network]),
            **expected_pod_totals(pod["spec"]),
        )
        pods.append(pod_row)
    return containers, pods


def expected_pod_totals(spec: dict[str, Any]) -> dict[str, int | None]:
    assert "overhead" not in spec, "a capture with pod overhead needs its expectation extended"
    assert "resources" not in spec, "a capture with pod-level resources needs its expectation extended"
    totals: dict[str, int | None] = {}
    for wire_name, table, kind, resource in [
        ("cpu_request_millicores", CPU_MILLICORES, "requests", "cpu"),
        ("cpu_limit_millicores", CPU_MILLICORES, "limits", "cpu"),
        ("memory_request_bytes", MEMORY_BYTES, "requests", "memory"),
        ("memory_limit_bytes", MEMORY_BYTES, "limits", "memory"),
    ]:
        apps = [quantity(table, c.get("resources"), kind, resource) for c in spec["containers"]]
        inits = [
            (quantity(table, c.get("resources"), kind, resource), c.get("restartPolicy") == "Always")
            for c in spec.get("initContainers", [])
        ]
        if all(value is None for value in apps + [value for value, _ in inits]):
            totals[wire_name] = None
            continue
        # Every phase of the pod's life: each init container's run (with the sidecars started before it),
        # then the app containers with all sidecars.
        phases, sidecars = [], 0
        for value, restartable in inits:
            if restartable:
                sidecars += value or 0
                phases.append(sidecars)
            else:
                phases.append(sidecars + (value or 0))
        phases.append(sum(value or 0 for value in apps) + sidecars)
        totals[wire_name] = max(phases)
    return totals


def expected_node(cap: Capture) -> dict[str, Any]:
    raw = cap.summary["node"]
    node_object = next(
        (item for item in (cap.nodes or {}).get("items", []) if item["metadata"]["name"] == cap.node), None
    )
    status = node_object["status"] if node_object else {}
    nics = [i for i in raw["network"]["interfaces"] if i["name"] in NODE_NICS[cap.name]]
    assert [i["name"] for i in nics] == NODE_NICS[cap.name]
    row: dict[str, Any] = dict.fromkeys(NodeSample.model_fields)
    row.update(
        timestamp_ns=epoch_ns(raw["cpu"]["time"]),
        labels=(node_object["metadata"].get("labels") or None) if node_object else None,
        boot_time_ns=epoch_ns(raw["startTime"]),
        cpu_usage_nanoseconds_total=raw["cpu"]["usageCoreNanoSeconds"],
        cpu_capacity_millicores=quantity(CPU_MILLICORES, status, "capacity", "cpu"),
        cpu_allocatable_millicores=quantity(CPU_MILLICORES, status, "allocatable", "cpu"),
        memory_usage_bytes=raw["memory"]["usageBytes"],
        memory_working_set_bytes=raw["memory"]["workingSetBytes"],
        memory_capacity_bytes=quantity(MEMORY_BYTES, status, "capacity", "memory"),
        memory_allocatable_bytes=quantity(MEMORY_BYTES, status, "allocatable", "memory"),
        network=summed(nics),
        fs_usage_bytes=raw["fs"]["usedBytes"],
        fs_capacity_bytes=raw["fs"]["capacityBytes"],
    )
    return row


def scrape_of(cap: Capture, *, with_node_object: bool = True) -> Any:
    return parse_scrape(
        cap.summary_bytes,
        cap.pods_bytes,
        node=cap.node,
        scraped_at_ns=SCRAPED_AT_NS,
        node_payload=cap.node_bytes if with_node_object else None,
    )


# --- every capture, every value ----------------------------------------------------------------------------


def test_container_samples_equal_the_payload(capture: Capture) -> None:
    expected, _ = expected_samples(capture)
    assert expected, "a capture without a running container tests nothing"
    assert [sample.model_dump() for sample in scrape_of(capture).containers] == expected


def test_pod_samples_equal_the_payload(capture: Capture) -> None:
    _, expected = expected_samples(capture)
    assert [sample.model_dump() for sample in scrape_of(capture).pods] == expected


def test_node_sample_equals_the_payload(capture: Capture) -> None:
    node = scrape_of(capture).node
    assert node is not None
    assert node.model_dump() == expected_node(capture)


def test_node_sample_without_the_node_object_has_no_capacity(capture: Capture) -> None:
    node = scrape_of(capture, with_node_object=False).node
    assert node is not None
    expected = expected_node(capture)
    for name in (
        "labels",
        "cpu_capacity_millicores",
        "cpu_allocatable_millicores",
        "memory_capacity_bytes",
        "memory_allocatable_bytes",
    ):
        expected[name] = None
    assert node.model_dump() == expected


def test_workloads_of_every_pod_in_pods(capture: Capture) -> None:
    workloads = {
        pod["metadata"]["name"]: workload_of(Pod.model_validate(pod)) for pod in capture.pods["items"]
    }
    found = {name: (workload.name, workload.kind) for name, workload in workloads.items()}
    assert found == WORKLOADS[capture.name]


def test_pods_that_run_nothing_produce_no_samples(capture: Capture) -> None:
    scrape = scrape_of(capture)
    sampled_pods = {sample.pod for sample in scrape.containers} | {sample.pod for sample in scrape.pods}
    assert not sampled_pods & NOT_RUNNING[capture.name]
    every_pod = {pod["metadata"]["name"] for pod in capture.pods["items"]}
    assert sampled_pods == every_pod - NOT_RUNNING[capture.name]


def test_pod_rollup_of_requests_equals_container_sums_without_init_rules(capture: Capture) -> None:
    # No capture has init containers with resources, sidecars or overhead: the pod's total is then exactly
    # the sum of its containers', which is what the aggregator's rollup computes.
    scrape = scrape_of(capture)
    for pod in scrape.pods:
        own = [c for c in scrape.containers if c.namespace == pod.namespace and c.pod == pod.pod]
        for name in ("cpu_request_millicores", "cpu_limit_millicores", "memory_request_bytes"):
            values = [getattr(c, name) for c in own if getattr(c, name) is not None]
            assert getattr(pod, name) == (sum(values) if values else None), (pod.pod, name)


def test_missing_fields_stay_none(capture: Capture) -> None:
    summary = copy.deepcopy(capture.summary)
    pod_stats = next(
        p
        for p in summary["pods"]
        if p["podRef"]["name"] not in NOT_RUNNING[capture.name] and p.get("network", {}).get("interfaces")
    )
    container = pod_stats["containers"][0]
    del container["cpu"]["usageCoreNanoSeconds"]
    del container["memory"]["rssBytes"]
    del container["rootfs"]
    del container["logs"]
    del container["startTime"]
    del pod_stats["network"]["interfaces"][0]["txErrors"]
    del summary["node"]["memory"]
    del summary["node"]["fs"]
    scrape = parse_scrape(
        json.dumps(summary).encode(), capture.pods_bytes, node=capture.node, scraped_at_ns=SCRAPED_AT_NS
    )
    sample = next(c for c in scrape.containers if c.pod == pod_stats["podRef"]["name"])
    assert sample.cpu_usage_nanoseconds_total is None
    assert sample.memory_rss_bytes is None
    assert sample.memory_usage_bytes == container["memory"]["usageBytes"]
    assert sample.fs_usage_bytes is None
    assert sample.fs_capacity_bytes is None
    # Without the summary's start time the status' running.startedAt still names the incarnation.
    status = statuses_of(
        next(p for p in capture.pods["items"] if p["metadata"]["uid"] == pod_stats["podRef"]["uid"])
    )
    assert sample.started_at_ns == epoch_ns(status[container["name"]]["state"]["running"]["startedAt"])
    pod = next(p for p in scrape.pods if p.pod == pod_stats["podRef"]["name"])
    if pod.network is not None:
        assert pod.network.tx_errors_total is None
        assert pod.network.rx_bytes_total is not None
    assert scrape.node is not None
    assert scrape.node.memory_usage_bytes is None
    assert scrape.node.memory_working_set_bytes is None
    assert scrape.node.fs_usage_bytes is None
    assert scrape.node.cpu_usage_nanoseconds_total == summary["node"]["cpu"]["usageCoreNanoSeconds"]


# --- edge cases on small hand-made payloads ----------------------------------------------------------------


def _summary(pods: list[dict[str, Any]], node: str = "n1") -> bytes:
    return json.dumps({"node": {"nodeName": node}, "pods": pods}).encode()


def _pods(items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"kind": "PodList", "items": items}).encode()


def _stats(uid: str, containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "podRef": {"name": f"pod-{uid}", "namespace": "ns", "uid": uid},
        "containers": containers,
        **extra,
    }


def _running(name: str, cid: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "containerID": f"containerd://{cid}",
        "restartCount": 0,
        "state": {"running": {}},
        **extra,
    }


def _pod(uid: str, *, spec: dict[str, Any], status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": f"pod-{uid}", "namespace": "ns", "uid": uid, **meta},
        "spec": spec,
        "status": status,
    }


def test_a_pod_not_yet_in_pods_is_left_for_the_next_scrape() -> None:
    scrape = parse_scrape(
        _summary([_stats("u1", [{"name": "c"}])]), _pods([]), node="n1", scraped_at_ns=SCRAPED_AT_NS
    )
    assert scrape.containers == []
    assert scrape.pods == []


def test_summary_of_another_node_is_refused() -> None:
    with pytest.raises(NodeMismatchError, match="'n2'"):
        parse_scrape(_summary([], node="n2"), _pods([]), node="n1", scraped_at_ns=SCRAPED_AT_NS)


def test_garbage_payloads_raise_value_error() -> None:
    with pytest.raises(ValueError, match="JSON"):
        parse_scrape(b"<html>", _pods([]), node="n1", scraped_at_ns=SCRAPED_AT_NS)
    with pytest.raises(ValueError, match="node"):
        parse_scrape(b'{"pods": []}', _pods([]), node="n1", scraped_at_ns=SCRAPED_AT_NS)
    with pytest.raises(ValueError, match="EOF"):
        parse_scrape(_summary([]), _pods([])[:-5], node="n1", scraped_at_ns=SCRAPED_AT_NS)


def test_a_container_listed_twice_keeps_its_latest_incarnation() -> None:
    old = {"name": "c", "startTime": "2024-01-01T00:00:00Z", "cpu": {"usageCoreNanoSeconds": 5}}
    new = {"name": "c", "startTime": "2024-01-01T00:05:00Z", "cpu": {"usageCoreNanoSeconds": 1}}
    scrape = parse_scrape(
        _summary([_stats("u1", [new, old])]),
        _pods(
            [
                _pod(
                    "u1",
                    spec={"containers": [{"name": "c"}]},
                    status={"containerStatuses": [_running("c", "b")]},
                )
            ]
        ),
        node="n1",
        scraped_at_ns=SCRAPED_AT_NS,
    )
    [sample] = scrape.containers
    assert sample.cpu_usage_nanoseconds_total == 1
    assert sample.started_at_ns == epoch_ns("2024-01-01T00:05:00Z")
    assert sample.timestamp_ns == SCRAPED_AT_NS  # no reading time in the payload: the scrape's stands in


def test_sidecars_and_debug_containers_are_sampled_completed_init_containers_are_not() -> None:
    spec = {
        "initContainers": [
            {"name": "setup", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
        ],
        "containers": [{"name": "app", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}}],
        "overhead": {"cpu": "10m"},
    }
    status = {
        "initContainerStatuses": [
            {"name": "setup", "containerID": "containerd://s", "state": {"terminated": {"exitCode": 0}}},
            _running("proxy", "p"),
        ],
        "containerStatuses": [_running("app", "a", restartCount=3)],
        "ephemeralContainerStatuses": [_running("debugger", "d")],
    }
    stats = _stats(
        "u1",
        [{"name": "proxy"}, {"name": "app"}, {"name": "debugger"}],
        network={"time": "2024-01-01T00:00:00Z", "rxBytes": 7, "txBytes": 9},
    )
    scrape = parse_scrape(
        _summary([stats]),
        _pods([_pod("u1", spec=spec, status=status)]),
        node="n1",
        scraped_at_ns=SCRAPED_AT_NS,
    )
    by_name = {sample.container: sample for sample in scrape.containers}
    assert set(by_name) == {"proxy", "app", "debugger"}
    assert by_name["proxy"].cpu_request_millicores == 100
    assert by_name["app"].restart_count == 3
    assert by_name["app"].memory_request_bytes == 64 * 2**20
    assert by_name["debugger"].cpu_request_millicores is None
    assert by_name["debugger"].container_id == "d"
    [pod] = scrape.pods
    # Requests: max(setup 1000m, proxy 100m + app 200m) + 10m overhead; memory: max(1Gi, 64Mi).
    assert pod.cpu_request_millicores == 1010
    assert pod.memory_request_bytes == 2**30
    assert pod.cpu_limit_millicores is None  # no container has a limit: overhead does not invent one
    # Without interface list, the kubelet's single (default) interface is the pod's network.
    assert pod.network == NetworkCounters(rx_bytes_total=7, tx_bytes_total=9)
    assert pod.timestamp_ns == epoch_ns("2024-01-01T00:00:00Z")


def test_labels_beyond_the_wire_cap_are_cut_not_the_pod() -> None:
    labels = {f"k{i:04d}": "v" for i in range(300)}
    scrape = parse_scrape(
        _summary([_stats("u1", [{"name": "c"}])]),
        _pods([_pod("u1", spec={}, status={"containerStatuses": [_running("c", "x")]}, labels=labels)]),
        node="n1",
        scraped_at_ns=SCRAPED_AT_NS,
    )
    [pod] = scrape.pods
    assert pod.labels is not None
    assert len(pod.labels) == 256
    assert min(pod.labels) == "k0000"


def test_out_of_range_values_drop_the_container_not_the_scrape() -> None:
    huge = {"name": "c", "cpu": {"usageCoreNanoSeconds": 2**64 - 1}}
    scrape = parse_scrape(
        _summary([_stats("u1", [huge, {"name": "d"}])]),
        _pods([_pod("u1", spec={}, status={"containerStatuses": [_running("c", "x"), _running("d", "y")]})]),
        node="n1",
        scraped_at_ns=SCRAPED_AT_NS,
    )
    assert [sample.container for sample in scrape.containers] == ["d"]


def test_runtime_container_id() -> None:
    assert runtime_container_id("docker://abc") == "abc"
    assert runtime_container_id("containerd://0123") == "0123"
    assert runtime_container_id("plain") == "plain"
    assert runtime_container_id("") is None
    assert runtime_container_id(None) is None


@pytest.mark.parametrize(
    ("name", "physical"),
    [
        ("eth0", True),
        ("ens160", True),
        ("enp3s0", True),
        ("eno1", True),
        ("bond0", True),
        ("eth0.100", False),
        ("lo", False),
        ("cali965b2d7be1e", False),
        ("veth1234", False),
        ("tunl0", False),
        ("flannel.1", False),
        ("cni0", False),
        ("docker0", False),
        ("lxc12ab", False),
        ("eni1a2b3c", False),
        ("gretap0", False),
        (None, False),
    ],
)
def test_physical_interfaces(name: str | None, physical: bool) -> None:
    assert is_physical_interface(name) is physical


# --- Kubernetes' pod resource rules ------------------------------------------------------------------------


def _d(*values: int | None) -> list[Decimal | None]:
    return [None if value is None else Decimal(value) for value in values]


@pytest.mark.parametrize(
    ("app", "init", "total"),
    [
        pytest.param([100, 200], [], 300, id="app containers add up"),
        pytest.param([100, None], [], 100, id="an undeclared container counts as zero"),
        pytest.param([None], [], None, id="nothing declared"),
        pytest.param([None], [(None, False)], None, id="nothing declared anywhere"),
        pytest.param([100], [(500, False)], 500, id="a larger init container sets the total"),
        pytest.param([600], [(500, False), (300, False)], 600, id="init containers run one at a time"),
        pytest.param([100], [(50, True)], 150, id="a sidecar runs beside the app"),
        pytest.param([100], [(50, True), (500, False)], 550, id="an init after a sidecar runs beside it"),
        pytest.param([100], [(500, False), (50, True)], 500, id="an init before a sidecar runs alone"),
        pytest.param([2], [(1, True), (3, False), (2, True)], 5, id="sidecars, init and app interleaved"),
        pytest.param([None], [(None, True), (700, False)], 700, id="undeclared sidecar, declared init"),
    ],
)
def test_effective_pod_amount(
    app: list[int | None], init: list[tuple[int | None, bool]], total: int | None
) -> None:
    result = effective_pod_amount(_d(*app), [(_d(value)[0], restartable) for value, restartable in init])
    assert result == (None if total is None else Decimal(total))


def test_pod_resources_follow_overhead_and_pod_level_rules() -> None:
    spec = PodSpec.model_validate(
        {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "128Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "0.5", "memory": "1e3"}}},
            ],
            "overhead": {"cpu": "0.1", "memory": "10Mi"},
        }
    )
    assert pod_resources(spec) == Resources(
        cpu_request_millicores=850,
        cpu_limit_millicores=None,  # no limit anywhere stays no limit, overhead or not
        memory_request_bytes=1000 + 10 * 2**20,
        memory_limit_bytes=138 * 2**20,
    )
    pod_level = PodSpec.model_validate(
        {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "250m"}}}],
            "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "4", "memory": "1Gi"}},
        }
    )
    assert pod_resources(pod_level) == Resources(
        cpu_request_millicores=2000, cpu_limit_millicores=4000, memory_limit_bytes=2**30
    )


def test_fractional_millicores_and_bytes_round_up_as_kubernetes_does() -> None:
    spec = PodSpec.model_validate(
        {"containers": [{"name": "a", "resources": {"requests": {"cpu": "100u", "memory": "1.5"}}}]}
    )
    assert pod_resources(spec) == Resources(cpu_request_millicores=1, memory_request_bytes=2)


# --- workloads ---------------------------------------------------------------------------------------------


def _owned(
    owners: list[dict[str, Any]], *, labels: dict[str, str] | None = None, created: str | None = None
) -> Pod:
    meta: dict[str, Any] = {"name": "p-1", "ownerReferences": owners, "labels": labels or {}}
    if created:
        meta["creationTimestamp"] = created
    return Pod.model_validate({"metadata": meta})


@pytest.mark.parametrize(
    ("pod", "workload"),
    [
        pytest.param(_owned([]), ("p-1", "Pod"), id="bare pod"),
        pytest.param(_owned([{"kind": "Node", "name": "n1"}]), ("p-1", "Pod"), id="mirror of a static pod"),
        pytest.param(
            _owned(
                [{"kind": "ReplicaSet", "name": "web-5d8f", "controller": True}],
                labels={"pod-template-hash": "5d8f"},
            ),
            ("web", "Deployment"),
            id="deployment through its replicaset",
        ),
        pytest.param(
            _owned([{"kind": "ReplicaSet", "name": "web-5d8f"}], labels={"pod-template-hash": "ffff"}),
            ("web-5d8f", "ReplicaSet"),
            id="hash that does not match",
        ),
        pytest.param(
            _owned([{"kind": "ReplicaSet", "name": "web"}]), ("web", "ReplicaSet"), id="bare replicaset"
        ),
        pytest.param(
            _owned([{"kind": "ReplicaSet", "name": "-5d8f"}], labels={"pod-template-hash": "5d8f"}),
            ("-5d8f", "ReplicaSet"),
            id="nothing left before the hash",
        ),
        pytest.param(
            _owned([{"kind": "Job", "name": "backup-29371389"}], created="2025-11-04T19:09:07Z"),
            ("backup", "CronJob"),
            id="cronjob job named by its scheduled minute",
        ),
        pytest.param(
            _owned([{"kind": "Job", "name": "backup-2024"}], created="2025-11-04T19:09:07Z"),
            ("backup-2024", "Job"),
            id="number that is no recent minute",
        ),
        pytest.param(
            _owned([{"kind": "Job", "name": "backup-29371389"}], created="2025-11-04T19:08:00Z"),
            ("backup-29371389", "Job"),
            id="minute after the pod was created",
        ),
        pytest.param(
            _owned([{"kind": "Job", "name": "backup-29371389"}]),
            ("backup-29371389", "Job"),
            id="no creation time",
        ),
        pytest.param(
            _owned([{"kind": "Job", "name": "backup-29371389"}], created="2025-11-12T19:09:07Z"),
            ("backup-29371389", "Job"),
            id="minute more than a week before",
        ),
        pytest.param(
            _owned(
                [
                    {"kind": "Foo", "name": "other", "controller": False},
                    {"kind": "DaemonSet", "name": "ds", "controller": True},
                ]
            ),
            ("ds", "DaemonSet"),
            id="the controller owner wins",
        ),
        pytest.param(_owned([{"kind": "Rollout", "name": "r"}]), ("r", "Rollout"), id="custom controller"),
    ],
)
def test_workload_of(pod: Pod, workload: tuple[str, str]) -> None:
    found = workload_of(pod)
    assert (found.name, found.kind) == workload
