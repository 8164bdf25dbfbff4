"""The hub's Kubernetes objects: golden YAML plus the invariants that make them work together."""

from __future__ import annotations

from typing import Any

import yaml

from fleetlattice.render.hub_conf import render_hub_conf, restart_hash
from fleetlattice.render.hub_manifests import render_hub_manifests
from render_fixtures import HUB, Golden, hub_spec, hub_users


def _render(**fields: Any) -> list[dict[str, Any]]:
    spec = hub_spec(**fields)
    return render_hub_manifests(HUB, spec, render_hub_conf(HUB, spec, hub_users("ct-fac")), restart_hash(HUB, spec))


def _by_kind_name(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def test_single_server_with_empty_dir_golden(golden: Golden) -> None:
    golden("hub-1-replica.yaml", yaml.safe_dump_all(_render(), sort_keys=False))


def test_cluster_with_storage_class_and_tls_golden(golden: Golden) -> None:
    manifests = _render(
        replicas=3,
        tls={"enabled": True, "secretName": "eose-hub-tls"},
        jetstream={"storageClassName": "fast", "storageSize": "20Gi"},
        leafnodes={"serviceType": "LoadBalancer"},
        resources={"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi"}},
    )
    golden("hub-3-replicas-tls.yaml", yaml.safe_dump_all(manifests, sort_keys=False))


def test_objects_and_names() -> None:
    assert sorted(_by_kind_name(_render())) == [
        ("ConfigMap", "eose-hub-config"),
        *(("ConfigMap", f"eose-hub-users-{i}") for i in range(8)),
        ("PodDisruptionBudget", "eose-hub"),
        ("Service", "eose-hub"),
        ("Service", "eose-hub-headless"),
        ("Service", "eose-hub-leafnodes"),
        ("Service", "eose-hub-monitoring"),
        ("StatefulSet", "eose-hub"),
    ]


def test_selectors_select_the_pods_and_service_ports_exist_on_the_container() -> None:
    objects = _by_kind_name(_render(replicas=3))
    pod = objects["StatefulSet", "eose-hub"]["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    nats = pod["spec"]["containers"][0]
    container_ports = {p["name"]: p["containerPort"] for p in nats["ports"]}
    for (kind, _), obj in objects.items():
        assert obj["metadata"]["namespace"] == "fleet-system"
        if kind == "Service":
            assert obj["spec"]["selector"].items() <= pod_labels.items()
            for port in obj["spec"]["ports"]:
                assert container_ports[port["targetPort"]] == port["port"]
        if kind in ("StatefulSet", "PodDisruptionBudget"):
            assert obj["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_every_mount_has_a_volume() -> None:
    for fields in ({}, {"tls": {"enabled": True, "secretName": "t"}, "jetstream": {"storageClassName": "fast"}}):
        sts = _by_kind_name(_render(**fields))["StatefulSet", "eose-hub"]
        volumes = {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
        volumes |= {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
        for container in sts["spec"]["template"]["spec"]["containers"]:
            assert {m["name"] for m in container["volumeMounts"]} <= volumes


def test_restart_hash_is_the_pod_annotation() -> None:
    spec = hub_spec()
    sts = _by_kind_name(_render())["StatefulSet", "eose-hub"]
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"fleet.lattice.dev/restart-hash": restart_hash(HUB, spec)}


def test_kilo_sizes_become_kubernetes_quantities() -> None:
    sts = _by_kind_name(_render(jetstream={"storageSize": "500K"}))["StatefulSet", "eose-hub"]
    data = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert data["emptyDir"]["sizeLimit"] == "500k"
