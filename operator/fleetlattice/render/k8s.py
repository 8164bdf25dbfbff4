"""Small builders for Kubernetes manifest fragments shared by the hub and leaf renderers."""

from __future__ import annotations

from typing import Any

Manifest = dict[str, Any]

# nats images run as root by default; every container here runs as this unprivileged user instead.
RUN_AS = 1000


def metadata(name: str, namespace: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels), **extra}


def config_map(name: str, namespace: str, labels: dict[str, str], data: dict[str, str]) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(name, namespace, labels), "data": data}


def service_port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}


def container_port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "containerPort": port, "protocol": "TCP"}


def service(
    name: str,
    namespace: str,
    labels: dict[str, str],
    selector: dict[str, str],
    ports: list[dict[str, Any]],
    **spec: Any,
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace, labels),
        "spec": {"selector": dict(selector), "ports": ports, **spec},
    }


def http_probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": 10,
        "timeoutSeconds": 5,
        "periodSeconds": period,
        "successThreshold": 1,
        "failureThreshold": failures,
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def env_from_field(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def env_from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def resources(requests: dict[str, str], limits: dict[str, str]) -> dict[str, Any]:
    """Only the parts that are set, so an empty spec renders `{}` rather than empty maps."""
    return {key: dict(value) for key, value in (("requests", requests), ("limits", limits)) if value}
