"""SiloLeaf apply layer: the silo's credential, its user on the hub, its leaf, and its status."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.apply.credentials import CredentialSecrets
from fleetlattice.apply.hub import HubState, LeafIndex
from fleetlattice.clients.kube import Kube
from fleetlattice.logic.conditions import Cond, NotReady, owned_by, ownership
from fleetlattice.logic.heartbeats import SiloHeartbeats
from fleetlattice.logic.leaf_status import leaf_status
from fleetlattice.render.leaf import leaf_seed_secret, leaf_url, render_leaf_manifests, service_name
from fleetlattice.render.names import HubRef, SiloRef

CREDENTIAL_CHECKSUM_ANNOTATION = "fleet.lattice.dev/credential-checksum"


class LeafState:
    """The SiloLeaf side of the operator: applies a leaf's credential, hub user and workload, and reads
    its status from what the hub state and the heartbeat watch already hold."""

    def __init__(self, kube: Kube, hubs: HubState, heartbeats: SiloHeartbeats, credentials: CredentialSecrets) -> None:
        self.kube, self.hubs, self.heartbeats, self.credentials = kube, hubs, heartbeats, credentials

    def forget(self, namespace: str, silo: str, placed_in: str | None = None) -> None:
        """The SiloLeaf is gone: nothing of it stays in memory. `placed_in`: its spec.leaf.namespace."""
        ref = SiloRef(silo)
        self.credentials.forget(namespace, ref.credentials_secret)
        self.credentials.forget(placed_in or namespace, ref.local_secret)
        self.heartbeats.forget(namespace, silo)

    async def apply(self, body: dict[str, Any], spec: SiloLeafSpec, claimant: str,
                    hub_spec: FleetHubSpec | None, leaves: LeafIndex, *, reread: bool = False) -> str:
        """Everything a SiloLeaf owns. Returns the credentials Secret name. `claimant` is the SiloLeaf that
        owns this silo in this namespace (see logic.leaf_status.oldest_claimant); `hub_spec` is its hub's, None
        when the hub does not exist; `leaves`: see HubState.sync; `reread`: read the credential Secrets afresh
        (see CredentialSecrets)."""
        meta = body["metadata"]
        namespace = meta["namespace"]
        if claimant != meta["name"]:
            raise NotReady("DuplicateSilo",
                           f"silo {spec.silo} already belongs to SiloLeaf {claimant} in namespace {namespace}")
        if hub_spec is None:
            raise NotReady("HubNotFound", f"FleetHub {namespace}/{spec.hub} does not exist")
        hub = HubRef(spec.hub, namespace)
        silo = SiloRef(spec.silo)
        target = leaf_namespace(body, spec)
        cred = await self.credentials.ensure(body, silo.credentials_secret, spec.silo, silo.labels, reread=reread)
        # The hub's config as soon as the silo's key exists: the servers' reload is what a new silo waits for, and
        # the leaf's own objects below (a claim check, the local credential) need none of it.
        if self.hubs.lacks_user(hub, cred.public_key) or meta.get("generation") != (body.get("status") or {}).get(
                "observedGeneration"):
            await self.hubs.sync(namespace, spec.hub, leaves)
        await self._leave_previous_place(body, spec)
        if spec.leaf.mode == "InCluster":
            await self._claim(body, spec, target)
        # Where the silo's agent and apps run: beside the leaf.
        local = await self.credentials.ensure(body, silo.local_secret, silo.local_user, silo.labels,
                                              namespace=target, reread=reread)
        if spec.leaf.mode == "InCluster":
            remote_url = hub.leafnode_url(hub_spec.leafnodes.advertise, hub_spec.ports.leafnodes)
            manifests = render_leaf_manifests(spec, target, remote_url, local.public_key, hub_tls=hub_spec.tls.enabled)
            if target != namespace:
                manifests.insert(0, leaf_seed_secret(spec, target, cred.seed, silo.labels))
            for manifest in manifests:
                _merge(manifest["metadata"], ownership(body, target))
                if manifest["kind"] == "Deployment":
                    # A rotated credential must roll the leaf: its env var is only read at start.
                    annotations = manifest["spec"]["template"]["metadata"].setdefault("annotations", {})
                    annotations[CREDENTIAL_CHECKSUM_ANNOTATION] = hashlib.sha256(
                        cred.public_key.encode()).hexdigest()[:16]
                await self.kube.apply(manifest)
        return silo.credentials_secret

    def observe(self, body: dict[str, Any], spec: SiloLeafSpec, secret: str) -> tuple[dict[str, Any], list[Cond]]:
        namespace = body["metadata"]["namespace"]
        fields, conds = leaf_status(spec, body.get("status") or {}, secret,
                                    self.hubs.snapshots.get(HubRef(spec.hub, namespace)),
                                    self.heartbeats.latest(namespace, spec.silo))
        target = leaf_namespace(body, spec)
        fields.update(leafNamespace=target if spec.leaf.mode == "InCluster" else "", leafUrl=leaf_url(spec, target))
        return fields, conds

    async def _claim(self, body: dict[str, Any], spec: SiloLeafSpec, target: str) -> None:
        """Never take over a leaf or Service someone else made in the silo's namespace (the seed's own
        nats-leaf, or the same silo placed there from another fleet namespace)."""
        for kind, name in (("Deployment", SiloRef(spec.silo).leaf), ("Service", service_name(spec))):
            existing = await self.kube.get(kind, target, name)
            if existing is not None and not owned_by(existing, body):
                raise NotReady("LeafNameTaken", f"{kind} {target}/{name} exists and is not this SiloLeaf's; "
                               "remove it or choose spec.leaf.namespace / spec.leaf.serviceName")

    async def _leave_previous_place(self, body: dict[str, Any], spec: SiloLeafSpec) -> None:
        """The spec moved the leaf (another namespace or Service name, or External now): what it left behind
        goes. Status says where the leaf was (leafUrl names its Service)."""
        status = body.get("status") or {}
        before_ns, before_url = status.get("leafNamespace"), status.get("leafUrl", "")
        if not before_ns:
            return
        here = spec.leaf.mode == "InCluster" and before_ns == leaf_namespace(body, spec)
        before_service = urlsplit(before_url).hostname.split(".")[0] if before_url else ""
        if here and before_service == service_name(spec):
            return
        if here:
            await self._delete_owned(body, [("Service", before_ns, before_service)])
        else:
            await self.remove_children(body, spec, before_ns, before_service)

    async def remove_children(self, body: dict[str, Any], spec: SiloLeafSpec, namespace: str | None = None,
                              service: str | None = None) -> None:
        """Delete what this SiloLeaf put in a namespace (default: where its spec places the leaf) — only what it
        made. Children in its own namespace go by garbage collection anyway."""
        namespace = namespace or leaf_namespace(body, spec)
        silo = SiloRef(spec.silo)
        children = [("Deployment", silo.leaf), ("ConfigMap", silo.leaf_config_map), ("NetworkPolicy", silo.leaf),
                    ("Service", service or service_name(spec))]
        if namespace != body["metadata"]["namespace"]:
            children += [("Secret", silo.credentials_secret), ("Secret", silo.local_secret)]
        await self._delete_owned(body, [(kind, namespace, name) for kind, name in children])

    async def _delete_owned(self, body: dict[str, Any], objects: list[tuple[str, str, str]]) -> None:
        for kind, namespace, name in objects:
            existing = await self.kube.get(kind, namespace, name)
            if existing is not None and owned_by(existing, body):
                await self.kube.delete(kind, namespace, name)


def leaf_namespace(body: dict[str, Any], spec: SiloLeafSpec) -> str:
    return spec.leaf.namespace or body["metadata"]["namespace"]


def _merge(metadata: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict):
            metadata.setdefault(key, {}).update(value)
        else:
            metadata.setdefault(key, value)
