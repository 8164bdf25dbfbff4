"""The cluster itself works the way the operator's e2e tests rely on.

Node readiness, the locally built nats-server image in a StatefulSet, pod IPs
routable from the host, cluster DNS (Services and StatefulSet pod names), a
ClusterIP reachable from the host through kube-proxy, service-account tokens,
garbage collection, and no DNS forwarding to the outside world.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubehelpers import Kubectl, scratch_namespace
from localcluster import BUSYBOX_IMAGE, NATS_IMAGE, wait_for

pytestmark = pytest.mark.e2e

STS = "nats"
HEADLESS = "nats-headless"
CLIENT_SVC = "nats"
MONITOR_PORT = 8222


def _http_get(url: str, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def _healthz_ok(body: str) -> bool:
    return json.loads(body).get("status") == "ok"


def _nats_manifests() -> list[dict[str, Any]]:
    labels = {"app": STS}
    container = {
        "name": "nats",
        "image": NATS_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        # No command: the image's default (nats-server with /etc/nats/nats-server.conf) must work.
        "ports": [{"name": "client", "containerPort": 4222}, {"name": "monitor", "containerPort": MONITOR_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": MONITOR_PORT}, "periodSeconds": 2},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": HEADLESS},
            "spec": {
                "clusterIP": "None",
                "selector": labels,
                "ports": [{"name": "client", "port": 4222}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": CLIENT_SVC},
            "spec": {"selector": labels, "ports": [{"name": "monitor", "port": MONITOR_PORT}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": STS},
            "spec": {
                "serviceName": HEADLESS,
                "replicas": 3,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
                },
            },
        },
    ]


@dataclass(frozen=True)
class NatsSet:
    namespace: str
    pod_ips: dict[str, str]  # pod name -> IP


@pytest.fixture(scope="module")
def nats_set(kubectl: Kubectl) -> Iterator[NatsSet]:
    """A 3-replica nats-server StatefulSet behind a headless Service, all Ready."""
    with scratch_namespace(kubectl, "nats-sts") as ns:
        kubectl.apply(*_nats_manifests(), namespace=ns)

        def ready() -> bool:
            return kubectl.json("get", "statefulset", STS, "-n", ns).get("status", {}).get("readyReplicas", 0) == 3

        wait_for(ready, 180, f"StatefulSet {ns}/{STS} to have 3 ready replicas", 1.0)
        pods = kubectl.json("get", "pods", "-n", ns, "-l", f"app={STS}")["items"]
        yield NatsSet(ns, {p["metadata"]["name"]: p["status"]["podIP"] for p in pods})


def _exec(kubectl: Kubectl, ns: str, pod: str, *cmd: str) -> str:
    return kubectl("exec", "-n", ns, pod, "-c", "nats", "--", *cmd).stdout


def test_node_ready(kubectl: Kubectl) -> None:
    nodes = kubectl.json("get", "nodes")["items"]
    assert nodes, "no nodes registered"
    for node in nodes:
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions.get("Ready") == "True", f"node {node['metadata']['name']} not Ready: {conditions}"


def test_statefulset_pods_have_distinct_ips(nats_set: NatsSet) -> None:
    assert sorted(nats_set.pod_ips) == [f"{STS}-0", f"{STS}-1", f"{STS}-2"]
    assert len(set(nats_set.pod_ips.values())) == 3


def test_pod_ips_reachable_from_host(nats_set: NatsSet) -> None:
    for pod, ip in nats_set.pod_ips.items():
        body = wait_for(lambda ip=ip: _http_get(f"http://{ip}:{MONITOR_PORT}/healthz"), 30, f"{pod} /healthz")
        assert _healthz_ok(body), body


def test_pod_to_pod_http(kubectl: Kubectl, nats_set: NatsSet) -> None:
    target = nats_set.pod_ips[f"{STS}-1"]
    body = _exec(kubectl, nats_set.namespace, f"{STS}-0", "wget", "-qO-", f"http://{target}:{MONITOR_PORT}/healthz")
    assert _healthz_ok(body), body


def test_statefulset_pod_dns_names_resolve(kubectl: Kubectl, nats_set: NatsSet) -> None:
    ns = nats_set.namespace
    for pod, ip in nats_set.pod_ips.items():
        fqdn = f"{pod}.{HEADLESS}.{ns}.svc.cluster.local"
        out = wait_for(
            lambda fqdn=fqdn, ip=ip: (
                (o := _exec(kubectl, ns, f"{STS}-0", "nslookup", "-type=a", fqdn)) and ip in o and o
            ),
            30,
            f"{fqdn} to resolve to {ip}",
        )
        assert ip in out


def test_service_dns_and_clusterip_from_pod(kubectl: Kubectl, nats_set: NatsSet) -> None:
    ns = nats_set.namespace
    url = f"http://{CLIENT_SVC}.{ns}.svc.cluster.local:{MONITOR_PORT}/healthz"
    body = wait_for(lambda: _exec(kubectl, ns, f"{STS}-2", "wget", "-qO-", url), 30, f"{url} from a pod")
    assert _healthz_ok(body), body


def test_clusterip_reachable_from_host(kubectl: Kubectl, nats_set: NatsSet) -> None:
    svc = kubectl.json("get", "service", CLIENT_SVC, "-n", nats_set.namespace)
    cluster_ip = svc["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.96."), cluster_ip
    url = f"http://{cluster_ip}:{MONITOR_PORT}/healthz"
    body = wait_for(lambda: _http_get(url), 30, f"{url} from the host via kube-proxy")
    assert _healthz_ok(body), body


def test_pods_get_service_account_tokens(kubectl: Kubectl, nats_set: NatsSet) -> None:
    token = _exec(kubectl, nats_set.namespace, f"{STS}-0", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")
    assert token.count(".") == 2, "projected service-account token is not a JWT"


def test_outside_names_do_not_resolve(kubectl: Kubectl, nats_set: NatsSet) -> None:
    """CoreDNS serves cluster.local only: it never forwards a query off the node."""
    proc = kubectl(
        "exec", "-n", nats_set.namespace, f"{STS}-0", "-c", "nats", "--", "nslookup", "example.com", check=False
    )
    assert "NXDOMAIN" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_owner_deletion_garbage_collects_children(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace=namespace)
    owner_uid = kubectl.json("get", "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
        "data": {"k": "v"},
    }
    kubectl.apply(child, namespace=namespace)
    kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: kubectl("get", "configmap", "child", "-n", namespace, check=False).returncode != 0,
        60,
        "the garbage collector to delete the child ConfigMap",
    )


def test_busybox_image_runs_to_completion(kubectl: Kubectl, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "c", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["echo", "hello"]}
            ],
        },
    }
    kubectl.apply(pod, namespace=namespace)
    wait_for(
        lambda: kubectl.json("get", "pod", "hello", "-n", namespace)["status"].get("phase") == "Succeeded",
        60,
        "busybox pod to succeed",
    )
    assert kubectl("logs", "hello", "-n", namespace).stdout.strip() == "hello"
