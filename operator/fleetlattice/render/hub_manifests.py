"""Kubernetes objects of a hub: ConfigMap, Services, StatefulSet and PodDisruptionBudget.

Owner references are not rendered; the apply layer adds them. The auth Secret is not rendered
either: it holds generated NKey seeds and is created once by the apply layer."""

from __future__ import annotations

from typing import Any

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.render import k8s
from fleetlattice.render.hub_conf import HubConf
from fleetlattice.render.layout import CONTAINER_PATHS, HUB_CONF_KEY, TERMINATION_GRACE_SECONDS, hub_users_key
from fleetlattice.render.names import RESTART_HASH_ANNOTATION, HubRef

_PATHS = CONTAINER_PATHS
# Port names are shared by container ports, Service ports and probes.
_CLIENT, _CLUSTER, _LEAFNODES, _MONITOR = "nats", "cluster", "leafnodes", "monitor"


def _ports(spec: FleetHubSpec) -> dict[str, int]:
    return {
        _CLIENT: spec.ports.client,
        _CLUSTER: spec.ports.cluster,
        _LEAFNODES: spec.ports.leafnodes,
        _MONITOR: spec.ports.monitoring,
    }


def _services(hub: HubRef, spec: FleetHubSpec) -> list[k8s.Manifest]:
    ports = _ports(spec)

    def svc(name: str, names: tuple[str, ...], **extra: Any) -> k8s.Manifest:
        service_ports = [k8s.service_port(n, ports[n]) for n in names]
        return k8s.service(name, hub.namespace, hub.labels, hub.selector, service_ports, **extra)

    return [
        svc(hub.client_service, (_CLIENT,)),
        # Stable per-pod DNS for routes; not-ready pods must resolve so a cluster can form at all.
        svc(hub.headless_service, tuple(ports), clusterIP="None", publishNotReadyAddresses=True),
        svc(hub.leafnode_service, (_LEAFNODES,), type=spec.leafnodes.service_type),
        svc(hub.monitoring_service, (_MONITOR,)),
    ]


def _nats_container(spec: FleetHubSpec) -> dict[str, Any]:
    mounts = [
        {"name": "config", "mountPath": _PATHS.config_dir},
        {"name": "pid", "mountPath": _PATHS.pid_dir},
        {"name": "data", "mountPath": _PATHS.data_dir},
    ]
    if spec.tls.enabled:
        mounts.append({"name": "tls", "mountPath": _PATHS.tls_dir, "readOnly": True})
    return {
        "name": "nats",
        "image": spec.image,
        "command": ["nats-server", "--config", _PATHS.config_file(HUB_CONF_KEY)],
        "env": [k8s.env_from_field("POD_NAME", "metadata.name")],
        "ports": [k8s.container_port(name, port) for name, port in _ports(spec).items()],
        # As the NATS Helm chart: startup waits for the full /healthz (JetStream recovered and current),
        # which also holds a rolling update until the restarted server has caught up; readiness only
        # needs the server and its JetStream up; liveness only that JetStream is enabled, because a
        # full /healthz legitimately fails for minutes during recovery and must not restart the pod.
        "startupProbe": k8s.http_probe("/healthz", _MONITOR, period=10, failures=90),
        "readinessProbe": k8s.http_probe("/healthz?js-server-only=true", _MONITOR, period=10, failures=3),
        "livenessProbe": k8s.http_probe("/healthz?js-enabled-only=true", _MONITOR, period=30, failures=3),
        "lifecycle": {
            "preStop": {"exec": {"command": ["nats-server", "--signal", f"ldm={_PATHS.pid_file}"]}},
        },
        "resources": k8s.resources(spec.resources.requests, spec.resources.limits),
        "securityContext": k8s.container_security_context(),
        "volumeMounts": mounts,
    }


def _reloader_container(spec: FleetHubSpec) -> dict[str, Any]:
    """nats-server-config-reloader (nats-io/nack): SIGHUPs the server when the mounted config changes."""
    return {
        "name": "reloader",
        "image": spec.reloader_image,
        "args": ["--pid", _PATHS.pid_file, "--config", _PATHS.config_file(HUB_CONF_KEY)],
        "resources": k8s.resources({"cpu": "10m", "memory": "16Mi"}, {"memory": "64Mi"}),
        "securityContext": k8s.container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": _PATHS.config_dir},
            {"name": "pid", "mountPath": _PATHS.pid_dir},
        ],
    }


def _quantity(size: str) -> str:
    """A Size as a Kubernetes quantity: the suffixes mean the same, except that Kubernetes spells kilo 'k'."""
    return size[:-1] + "k" if size.endswith("K") else size


def _volumes(hub: HubRef, spec: FleetHubSpec) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        # One directory for nats.conf and its user parts; kubelet swaps a projected volume's files together, so
        # the reloader never sees nats.conf ahead of the parts it includes.
        {"name": "config", "projected": {"sources": [{"configMap": {"name": name}} for name in hub.config_maps]}},
        {"name": "pid", "emptyDir": {}},
    ]
    if spec.jetstream.storage_class_name is None:
        volumes.append({"name": "data", "emptyDir": {"sizeLimit": _quantity(spec.jetstream.storage_size)}})
    if spec.tls.enabled:
        volumes.append({"name": "tls", "secret": {"secretName": spec.tls.secret_name}})
    return volumes


def _volume_claim_templates(hub: HubRef, spec: FleetHubSpec) -> list[dict[str, Any]]:
    if spec.jetstream.storage_class_name is None:
        return []
    return [
        {
            "metadata": {"name": "data", "labels": hub.labels},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": spec.jetstream.storage_class_name,
                "resources": {"requests": {"storage": _quantity(spec.jetstream.storage_size)}},
            },
        }
    ]


def _statefulset(hub: HubRef, spec: FleetHubSpec, restart_hash: str) -> k8s.Manifest:
    pod_spec = {
        # The reloader signals nats-server by the pid in the shared pid file, so it must see its process.
        "shareProcessNamespace": True,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": k8s.pod_security_context(),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": hub.selector},
            }
        ],
        "containers": [_nats_container(spec), _reloader_container(spec)],
        "volumes": _volumes(hub, spec),
    }
    sts_spec: dict[str, Any] = {
        "serviceName": hub.headless_service,
        "replicas": spec.replicas,
        # Servers of a cluster must all start to elect a JetStream meta leader; ordered start would deadlock.
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "RollingUpdate"},
        "selector": {"matchLabels": hub.selector},
        "template": {
            "metadata": {"labels": hub.labels, "annotations": {RESTART_HASH_ANNOTATION: restart_hash}},
            "spec": pod_spec,
        },
    }
    claims = _volume_claim_templates(hub, spec)
    if claims:
        sts_spec["volumeClaimTemplates"] = claims
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": k8s.metadata(hub.statefulset, hub.namespace, hub.labels),
        "spec": sts_spec,
    }


def _pdb(hub: HubRef) -> k8s.Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": k8s.metadata(hub.pdb, hub.namespace, hub.labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": hub.selector}},
    }


def render_hub_manifests(hub: HubRef, spec: FleetHubSpec, conf: HubConf, restart_hash: str) -> list[k8s.Manifest]:
    """Every object of the hub, in apply order (the user parts, then the nats.conf that includes them, before the
    pods that mount them)."""
    return [
        *(k8s.config_map(hub.users_config_map(i), hub.namespace, hub.labels, {hub_users_key(i): text})
          for i, text in enumerate(conf.parts)),
        k8s.config_map(hub.config_map, hub.namespace, hub.labels, {HUB_CONF_KEY: conf.main}),
        *_services(hub, spec),
        _statefulset(hub, spec, restart_hash),
        _pdb(hub),
    ]
