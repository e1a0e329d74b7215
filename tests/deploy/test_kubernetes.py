"""The Kubernetes manifests: they render, validate against current schemas, and keep their promises.

Every kustomization under deploy/kubernetes is rendered with ``kubectl kustomize`` and every object is
validated (strictly: unknown fields fail) with kubernetes-validate's bundled schemas, offline. The other
tests read the rendered objects: RBAC is exactly what the kubelet source requests, the collector runs
unprivileged on every node, only the intended peers reach each port, every variable is a real setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from collector.sources import kubelet
from tests.deploy.tooling import (
    KUBERNETES_DIR,
    NON_SETTINGS_ENV,
    find,
    kustomize_targets,
    pod_templates,
    render,
    settings_env_names,
    target_id,
)

TARGETS = kustomize_targets()
DEFAULT_INSTALL = KUBERNETES_DIR
BASE = KUBERNETES_DIR / "base"
METRICS_API = KUBERNETES_DIR / "overlays" / "metrics-api"

VALIDATE_VERSIONS = (kubernetes_validate.latest_version(), "1.30.0")
"""The newest release the installed kubernetes-validate knows, and the oldest one still commonly run."""

NAMESPACE = "kpulse"
CONTROL_PLANE_TAINTS = {"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"}


def kubelet_subresource(path: str) -> str:
    """The ``nodes/<subresource>`` the kubelet's authorizer checks for a request to ``path``.

    The kubelet maps /stats/* to nodes/stats, /metrics/* to nodes/metrics, /logs/* to nodes/log, /spec/* to
    nodes/spec, /checkpoint/* to nodes/checkpoint, and every other path to nodes/proxy.
    """
    specific = {
        "stats": "stats",
        "metrics": "metrics",
        "logs": "log",
        "spec": "spec",
        "checkpoint": "checkpoint",
    }
    first = path.strip("/").split("/", 1)[0]
    return f"nodes/{specific.get(first, 'proxy')}"


def container(template: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in template["spec"]["containers"] if c["name"] == name]
    assert len(matches) == 1, f"expected one container {name}"
    return matches[0]


def env_of(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in spec.get("env", [])}


def test_targets_are_the_default_install_the_base_and_the_overlays() -> None:
    assert [target_id(t) for t in TARGETS] == [
        ".",
        "base",
        "overlays/kubelet-insecure-tls",
        "overlays/metrics-api",
    ]


@pytest.mark.parametrize("target", TARGETS, ids=target_id)
def test_renders_and_every_object_validates_strictly(target: Path) -> None:
    objects = render(target)
    assert objects, f"{target_id(target)} rendered nothing"
    for version in VALIDATE_VERSIONS:
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: {exc}"
                )


def raw_manifest_files() -> list[Path]:
    """Every committed manifest that is a whole object (patches are inline in kustomization.yaml files)."""
    return sorted(p for p in KUBERNETES_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", raw_manifest_files(), ids=lambda p: str(p.relative_to(KUBERNETES_DIR)))
def test_every_manifest_file_validates_on_its_own(path: Path) -> None:
    for obj in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(obj, VALIDATE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("target", TARGETS, ids=target_id)
def test_no_secret_is_committed_and_the_referenced_ones_are_documented(target: Path) -> None:
    objects = render(target)
    assert [o for o in objects if o["kind"] == "Secret"] == []
    referenced = {
        (item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
        for _, template in pod_templates(objects)
        for spec in template["spec"]["containers"]
        for item in spec.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert referenced == {
        ("kpulse-ingest-token", "token"),
        ("kpulse-grafana-admin", "user"),
        ("kpulse-grafana-admin", "password"),
    }
    docs = (KUBERNETES_DIR.parents[1] / "docs" / "deploy.md").read_text()
    for name, _ in referenced:
        assert f"create secret generic {name}" in docs, f"docs/deploy.md does not say how to create {name}"


@pytest.mark.parametrize("target", TARGETS, ids=target_id)
def test_every_kpulse_variable_is_a_setting(target: Path) -> None:
    known = settings_env_names()
    for workload, template in pod_templates(render(target)):
        for spec in template["spec"]["containers"]:
            for name in env_of(spec):
                if name.startswith("KPULSE_"):
                    assert name in known, f"{workload['metadata']['name']}: {name} is not a settings field"
                elif workload["metadata"]["name"] in {"collector", "aggregator"}:
                    assert name in NON_SETTINGS_ENV, f"{name}: not read by kpulse"


def test_collector_rbac_is_exactly_what_the_kubelet_source_requests() -> None:
    objects = render(BASE)
    role = find(objects, "ClusterRole", "kpulse-collector")
    granted = {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if rule["apiGroups"] == [""]
    }
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    expected = {(kubelet_subresource(path), "get") for path in (kubelet.SUMMARY_PATH, kubelet.PODS_PATH)}
    # Capacity and allocatable come from the collector's own Node object on the API server.
    expected.add(("nodes", "get"))
    assert granted == expected
    binding = find(objects, "ClusterRoleBinding", "kpulse-collector")
    assert binding["roleRef"]["name"] == "kpulse-collector"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "collector", "namespace": NAMESPACE}]
    assert [o["metadata"]["name"] for o in objects if o["kind"] in {"ClusterRole", "Role"}] == [
        "kpulse-collector"
    ]


def test_collector_runs_on_every_node_unprivileged_with_its_node_from_the_downward_api() -> None:
    objects = render(DEFAULT_INSTALL)
    daemonset = find(objects, "DaemonSet", "collector")
    pod = daemonset["spec"]["template"]["spec"]
    assert {t["key"] for t in pod["tolerations"]} >= CONTROL_PLANE_TAINTS
    assert pod["serviceAccountName"] == "collector"
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host_namespace), host_namespace
    assert all("hostPath" not in volume for volume in pod.get("volumes", []))
    spec = container(daemonset["spec"]["template"], "collector")
    env = env_of(spec)
    assert env["KPULSE_COLLECTOR_SOURCE"]["value"] == "kubelet"
    assert env["KPULSE_COLLECTOR_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["NODE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["KPULSE_COLLECTOR_AGGREGATOR_URL"]["value"] == "http://aggregator:8080"
    assert set(spec["resources"]) == {"requests", "limits"}
    assert set(spec["resources"]["limits"]) == {"cpu", "memory"}
    # Liveness through the heartbeat the agent touches, on a writable volume under a read-only root.
    assert spec["livenessProbe"]["exec"]["command"] == ["python", "-m", "collector", "--check-heartbeat"]
    heartbeat = Path(env["KPULSE_COLLECTOR_HEARTBEAT_FILE"]["value"])
    mounts = {mount["name"]: mount["mountPath"] for mount in spec["volumeMounts"]}
    assert any(heartbeat.parent == Path(path) for path in mounts.values())
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert all("emptyDir" in volumes[name] for name in mounts)


@pytest.mark.parametrize("target", TARGETS, ids=target_id)
def test_every_container_is_locked_down(target: Path) -> None:
    for workload, template in pod_templates(render(target)):
        pod = template["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] >= 10000, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for spec in pod["containers"]:
            context = spec["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["privileged"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert {"requests", "limits"} <= set(spec["resources"]), name
        token_needed = name == "collector" or (target == METRICS_API and name == "aggregator")
        assert pod.get("automountServiceAccountToken") is token_needed, name


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = find(render(DEFAULT_INSTALL), "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("target", TARGETS, ids=target_id)
def test_services_select_pods_and_name_ports_they_have(target: Path) -> None:
    objects = render(target)
    templates = [template for _, template in pod_templates(objects)]
    for service in (o for o in objects if o["kind"] == "Service"):
        selected = [
            t for t in templates if service["spec"]["selector"].items() <= t["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {len(selected)} workloads"
        ports = {p["name"] for c in selected[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{service['metadata']['name']}: no port {port['targetPort']}"


def ingress_peers(policy: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """(peer, ports) per ingress rule; a peer is ``pod:<name>``, ``any-namespace:<label>`` or ``anyone``."""
    found = []
    for rule in policy["spec"].get("ingress", []):
        ports = tuple(sorted(p["port"] for p in rule.get("ports", [])))
        if "from" not in rule:
            found.append(("anyone", ports))
        for peer in rule.get("from", []):
            labels = peer["podSelector"]["matchLabels"]
            if "namespaceSelector" in peer:
                assert peer["namespaceSelector"] == {}
                found.append((f"any-namespace:{','.join(f'{k}={v}' for k, v in labels.items())}", ports))
            else:
                found.append((f"pod:{labels['app.kubernetes.io/name']}", ports))
    return sorted(found)


def test_network_policies_let_only_the_intended_peers_in() -> None:
    objects = render(DEFAULT_INSTALL)
    deny = find(objects, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert ingress_peers(find(objects, "NetworkPolicy", "aggregator")) == [
        ("any-namespace:kpulse.io/query-client=true", (8080,)),
        ("pod:collector", (8080,)),
        ("pod:grafana", (8080,)),
    ]
    assert ingress_peers(find(objects, "NetworkPolicy", "influxdb")) == [
        ("pod:aggregator", (8086,)),
        ("pod:grafana", (8086,)),
    ]
    assert ingress_peers(find(objects, "NetworkPolicy", "grafana")) == [("anyone", (3000,))]
    covered = {
        o["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for o in objects
        if o["kind"] == "NetworkPolicy"
    }
    assert {"aggregator", "influxdb", "grafana"} <= covered
    # The collector accepts nothing: no policy opens a port on it, so the default denial applies.
    assert "collector" not in covered


def test_aggregator_is_a_singleton_replaced_not_rolled() -> None:
    deployment = find(render(DEFAULT_INSTALL), "Deployment", "aggregator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    probes = container(deployment["spec"]["template"], "aggregator")
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_influxdb_keeps_its_data_on_a_claim() -> None:
    statefulset = find(render(DEFAULT_INSTALL), "StatefulSet", "influxdb")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    mounts = container(statefulset["spec"]["template"], "influxdb")["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/var/lib/influxdb"} in mounts
    assert find(render(DEFAULT_INSTALL), "Service", "influxdb")["spec"]["clusterIP"] == "None"


def test_kubelet_insecure_tls_overlay_changes_only_verification() -> None:
    base = render(BASE)
    overlay = render(KUBERNETES_DIR / "overlays" / "kubelet-insecure-tls")
    before = env_of(container(find(base, "DaemonSet", "collector")["spec"]["template"], "collector"))
    after = env_of(container(find(overlay, "DaemonSet", "collector")["spec"]["template"], "collector"))
    assert set(after) - set(before) == {"KPULSE_COLLECTOR_KUBELET_INSECURE_SKIP_VERIFY"}
    assert after["KPULSE_COLLECTOR_KUBELET_INSECURE_SKIP_VERIFY"]["value"] == "true"
    assert len(overlay) == len(base)


def test_metrics_api_overlay_registers_the_aggregator() -> None:
    objects = render(METRICS_API)
    apiservice = find(objects, "APIService", "v1beta1.metrics.k8s.io")
    assert (apiservice["spec"]["group"], apiservice["spec"]["version"]) == ("metrics.k8s.io", "v1beta1")
    reference = apiservice["spec"]["service"]
    service = find(objects, "Service", reference["name"])
    assert service["metadata"]["namespace"] == reference["namespace"] == NAMESPACE
    (port,) = (p for p in service["spec"]["ports"] if p["port"] == reference["port"])
    aggregator = container(find(objects, "Deployment", "aggregator")["spec"]["template"], "aggregator")
    container_ports = {p["name"]: p["containerPort"] for p in aggregator["ports"]}
    assert port["targetPort"] in container_ports
    opened = ingress_peers(find(objects, "NetworkPolicy", "aggregator-metrics-api"))
    assert opened == [("anyone", (container_ports[port["targetPort"]],))]
    delegator = find(objects, "ClusterRoleBinding", "kpulse-aggregator-auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    reader = find(objects, "RoleBinding", "kpulse-aggregator-auth-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
