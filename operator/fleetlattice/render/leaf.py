"""A silo's leaf nats-server: its leaf.conf, the in-cluster workload, and the bundle for a leaf that
runs in another cluster. The leaf dials the hub as the silo's user, so the hub enforces the silo's
permissions on everything that crosses; the silo's NKey seed reaches the leaf only through a Secret."""

from __future__ import annotations

import base64
import hashlib
import json

from fleetlattice.api import defaults
from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.logic.credentials import SEED_KEY, Credential
from fleetlattice.render import k8s
from fleetlattice.render.layout import CONTAINER_PATHS, LEAF_CONF_KEY, TLS_CA_KEY, ServerPaths
from fleetlattice.render.names import (
    CLUSTER_DOMAIN,
    CONFIG_CHECKSUM_ANNOTATION,
    PERMISSIONS_CHECKSUM_ANNOTATION,
    SiloRef,
)
from fleetlattice.render.permissions import silo_permissions
from fleetlattice.render.templating import render_template

SEED_ENV = "FLEET_LEAF_NKEY_SEED"
_PATHS = CONTAINER_PATHS
_CLIENT, _MONITOR = "nats", "monitor"


def render_leaf_conf(
    silo: str,
    remote_url: str,
    local_nkey: str,
    hub_tls: bool,
    paths: ServerPaths = CONTAINER_PATHS,
    client_port: int = defaults.CLIENT_PORT,
    monitoring_port: int = defaults.MONITOR_PORT,
) -> str:
    """leaf.conf of `silo`'s leaf, dialing the hub's leafnode `remote_url` (no credential in it: the seed
    comes from the environment); with `hub_tls` the remote verifies the hub against the mounted CA. Its
    client port admits only `local_nkey` (a public key): a pod that merely reaches the leaf's Service could
    otherwise publish the silo's reports or read its requests."""
    return render_template(
        "leaf.conf.j2",
        silo=silo,
        server_name=SiloRef(silo).leaf,
        client_port=client_port,
        monitoring_port=monitoring_port,
        remote_url=remote_url,
        seed_env=SEED_ENV,
        local_nkey=local_nkey,
        local_secret=SiloRef(silo).local_secret,
        tls=hub_tls,
        paths=paths,
    )


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _pod_annotations(spec: SiloLeafSpec, conf_text: str) -> dict[str, str]:
    """Changes that must restart the leaf: its own config (a leaf has no reloader sidecar), and the
    silo's permissions. A hub reload applies changed permissions only to leafnode connections made
    after it (verified on 2.15.1: the connected leaf keeps the old ones), so the leaf must reconnect."""
    permissions = json.dumps(silo_permissions(spec.silo, spec.permissions), sort_keys=True)
    return {CONFIG_CHECKSUM_ANNOTATION: _checksum(conf_text), PERMISSIONS_CHECKSUM_ANNOTATION: _checksum(permissions)}


def _deployment(silo: SiloRef, namespace: str, spec: SiloLeafSpec, conf_text: str, hub_tls: bool) -> k8s.Manifest:
    mounts = [{"name": "config", "mountPath": _PATHS.config_dir}]
    volumes: list[dict] = [{"name": "config", "configMap": {"name": silo.leaf_config_map}}]
    if hub_tls:
        mounts.append({"name": "hub-ca", "mountPath": _PATHS.tls_dir, "readOnly": True})
        volumes.append(
            {
                "name": "hub-ca",
                "secret": {
                    "secretName": silo.credentials_secret,
                    "items": [{"key": TLS_CA_KEY, "path": TLS_CA_KEY}],
                },
            }
        )
    container = {
        "name": "nats",
        "image": spec.leaf.image,
        "command": ["nats-server", "--config", _PATHS.config_file(LEAF_CONF_KEY)],
        "env": [k8s.env_from_secret(SEED_ENV, silo.credentials_secret, SEED_KEY)],
        "ports": [
            k8s.container_port(_CLIENT, defaults.CLIENT_PORT),
            k8s.container_port(_MONITOR, defaults.MONITOR_PORT),
        ],
        # No JetStream on the leaf, so the plain /healthz is the whole server's health.
        "readinessProbe": k8s.http_probe("/healthz", _MONITOR, period=10, failures=3),
        "livenessProbe": k8s.http_probe("/healthz", _MONITOR, period=30, failures=3),
        "securityContext": k8s.container_security_context(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": k8s.metadata(silo.leaf, namespace, silo.labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": silo.selector},
            "template": {
                "metadata": {"labels": silo.labels, "annotations": _pod_annotations(spec, conf_text)},
                "spec": {
                    "securityContext": k8s.pod_security_context(),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _network_policy(silo: SiloRef, namespace: str) -> k8s.Manifest:
    """The second fence after the client port's NKey: only pods of the leaf's own namespace reach the leaf
    (its client and monitoring ports; kubelet probes are not subject to it). Egress stays open: the leaf
    dials the hub, wherever that is."""
    same_namespace = [{"podSelector": {}}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": k8s.metadata(silo.leaf, namespace, silo.labels),
        "spec": {
            "podSelector": {"matchLabels": silo.selector},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": same_namespace,
                         "ports": [{"protocol": "TCP", "port": port} for port in (_CLIENT, _MONITOR)]}],
        },
    }


def service_name(spec: SiloLeafSpec) -> str:
    return spec.leaf.service_name or SiloRef(spec.silo).leaf


def leaf_url(spec: SiloLeafSpec, namespace: str) -> str:
    """What the silo's agent and apps dial: the leaf's Service in `namespace`."""
    return f"nats://{service_name(spec)}.{namespace}.{CLUSTER_DOMAIN}:{defaults.CLIENT_PORT}"


def render_leaf_manifests(spec: SiloLeafSpec, namespace: str, remote_url: str, local_nkey: str,
                          hub_tls: bool) -> list[k8s.Manifest]:
    """ConfigMap, Deployment, Service and NetworkPolicy of the silo's leaf in `namespace`. The credentials
    Secret (key `seed`, and `ca.crt` when the hub serves TLS) must exist in that namespace too."""
    silo = SiloRef(spec.silo)
    conf_text = render_leaf_conf(spec.silo, remote_url, local_nkey, hub_tls)
    ports = [k8s.service_port(_CLIENT, defaults.CLIENT_PORT)]
    return [
        k8s.config_map(silo.leaf_config_map, namespace, silo.labels, {LEAF_CONF_KEY: conf_text}),
        _deployment(silo, namespace, spec, conf_text, hub_tls),
        k8s.service(service_name(spec), namespace, silo.labels, silo.selector, ports),
        _network_policy(silo, namespace),
    ]


def leaf_seed_secret(spec: SiloLeafSpec, namespace: str, seed: str, labels: dict[str, str]) -> k8s.Manifest:
    """The silo's hub seed where its leaf runs, when that is another namespace than the SiloLeaf's: a pod reads
    Secrets of its own namespace only. The seed alone: the public key and user name stay with the original."""
    return _secret(SiloRef(spec.silo).credentials_secret, namespace, labels, {SEED_KEY: seed})


def _secret(name: str, namespace: str, labels: dict[str, str], data: dict[str, str]) -> k8s.Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": k8s.metadata(name, namespace, labels),
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def render_leaf_bundle(spec: SiloLeafSpec, namespace: str, remote_url: str, seed: str, local: Credential,
                       hub_ca: str | None) -> list[k8s.Manifest]:
    """Everything an External leaf needs, for `kubectl apply` in the silo's own cluster: the credentials
    Secret (only the seed, plus the hub's CA when the hub serves TLS), the local clients' Secret, then the
    leaf's objects."""
    silo = SiloRef(spec.silo)
    data = {SEED_KEY: seed}
    if hub_ca is not None:
        data[TLS_CA_KEY] = hub_ca
    local_data = {key: base64.b64decode(value).decode() for key, value in local.secret_data().items()}
    return [_secret(silo.credentials_secret, namespace, silo.labels, data),
            _secret(silo.local_secret, namespace, silo.labels, local_data),
            *render_leaf_manifests(spec, namespace, remote_url, local.public_key, hub_tls=hub_ca is not None)]
