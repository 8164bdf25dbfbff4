"""Cluster DNS: CoreDNS's objects (it runs as a Deployment in kube-system) and the smoke test that a pod
resolves a Service name through it."""

from __future__ import annotations

import json
from typing import Any

from .api import api_get, kubectl
from .network import DNS_SVC_IP, KUBERNETES_SVC_IP
from .paths import Paths
from .pins import BUSYBOX_IMAGE, COREDNS_IMAGE
from .waiting import wait_for

COREFILE = """\
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        ttl 5
    }
    cache 5
}
.:53 {
    errors
    # No forward plugin on purpose: nothing leaves the node; other names do not exist.
    template ANY ANY {
        rcode NXDOMAIN
    }
}
"""


def coredns_manifests() -> list[dict[str, Any]]:
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": "coredns", "namespace": "kube-system"}
    pod_spec = {
        "serviceAccountName": "coredns",
        "priorityClassName": "system-cluster-critical",
        "dnsPolicy": "Default",
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "containers": [
            {
                "name": "coredns",
                "image": COREDNS_IMAGE,
                "imagePullPolicy": "Never",
                "args": ["-conf", "/etc/coredns/Corefile"],
                "ports": [
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": DNS_SVC_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


def dns_smoke_test(paths: Paths) -> None:
    """A pod must resolve a Service name through CoreDNS, via kube-proxy's ClusterIP NAT."""
    name, lookup = "dns-smoke", "kubernetes.default.svc.cluster.local"
    # Pods are rejected until the serviceaccount controller has made the namespace's default account.
    wait_for(lambda: api_get(paths, "/api/v1/namespaces/default/serviceaccounts/default"), 60, "default ServiceAccount")
    kubectl(paths, "delete", "pod", name, "-n", "default", "--ignore-not-found", "--wait=true")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "OnFailure",  # retried until CoreDNS and the Service NAT answer
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "nslookup",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", f"nslookup -type=a {lookup} | grep -q {KUBERNETES_SVC_IP}"],
                }
            ],
        },
    }
    kubectl(paths, "apply", "-f", "-", input_text=json.dumps(pod))

    def succeeded() -> bool:
        phase = api_get(paths, f"/api/v1/namespaces/default/pods/{name}")["status"].get("phase")
        return phase == "Succeeded"

    wait_for(succeeded, 120, "a pod to resolve kubernetes.default.svc.cluster.local", 0.5)
    kubectl(paths, "delete", "pod", name, "-n", "default", "--wait=false")
