"""SiloLeaf apply layer: the silo's credential, its user on the hub, its leaf, and its status."""

from __future__ import annotations

import hashlib
from typing import Any

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.apply.credentials import CredentialSecrets
from fleetlattice.apply.hub import HubState
from fleetlattice.clients.kube import Kube
from fleetlattice.logic.conditions import Cond, NotReady, owner_reference
from fleetlattice.logic.heartbeats import SiloHeartbeats
from fleetlattice.logic.leaf_status import leaf_status
from fleetlattice.render.leaf import render_leaf_manifests
from fleetlattice.render.names import HubRef, SiloRef

CREDENTIAL_CHECKSUM_ANNOTATION = "fleet.lattice.dev/credential-checksum"


class LeafState:
    """The SiloLeaf side of the operator: applies a leaf's credential, hub user and workload, and reads
    its status from what the hub state and the heartbeat watch already hold."""

    def __init__(self, kube: Kube, hubs: HubState, heartbeats: SiloHeartbeats, credentials: CredentialSecrets) -> None:
        self.kube, self.hubs, self.heartbeats, self.credentials = kube, hubs, heartbeats, credentials

    def forget(self, namespace: str, silo: str) -> None:
        """The SiloLeaf is gone: nothing of it stays in memory."""
        ref = SiloRef(silo)
        for secret in (ref.credentials_secret, ref.local_secret):
            self.credentials.forget(namespace, secret)
        self.heartbeats.forget(namespace, silo)

    async def apply(self, body: dict[str, Any], spec: SiloLeafSpec, claimant: str) -> str:
        """Everything a SiloLeaf owns. Returns the credentials Secret name. `claimant` is the SiloLeaf that
        owns this silo in this namespace (see logic.leaf_status.oldest_claimant)."""
        meta = body["metadata"]
        namespace = meta["namespace"]
        if claimant != meta["name"]:
            raise NotReady("DuplicateSilo",
                           f"silo {spec.silo} already belongs to SiloLeaf {claimant} in namespace {namespace}")
        hub_body = await self.kube.get("FleetHub", namespace, spec.hub)
        if hub_body is None:
            raise NotReady("HubNotFound", f"FleetHub {namespace}/{spec.hub} does not exist")
        hub_spec = FleetHubSpec.model_validate(hub_body.get("spec") or {})
        hub = HubRef(spec.hub, namespace)
        silo = SiloRef(spec.silo)
        cred = await self.credentials.ensure(body, silo.credentials_secret, spec.silo, silo.labels)
        local = await self.credentials.ensure(body, silo.local_secret, silo.local_user, silo.labels)
        if self.hubs.lacks_user(hub, cred.public_key) or meta.get("generation") != (body.get("status") or {}).get(
                "observedGeneration"):
            await self.hubs.sync(namespace, spec.hub)
        if spec.leaf.mode == "InCluster":
            remote_url = hub.leafnode_url(hub_spec.leafnodes.advertise, hub_spec.ports.leafnodes)
            for manifest in render_leaf_manifests(spec, namespace, remote_url, local.public_key,
                                                  hub_tls=hub_spec.tls.enabled):
                manifest["metadata"].setdefault("ownerReferences", [owner_reference(body)])
                if manifest["kind"] == "Deployment":
                    # A rotated credential must roll the leaf: its env var is only read at start.
                    annotations = manifest["spec"]["template"]["metadata"].setdefault("annotations", {})
                    annotations[CREDENTIAL_CHECKSUM_ANNOTATION] = hashlib.sha256(
                        cred.public_key.encode()).hexdigest()[:16]
                await self.kube.apply(manifest)
        return silo.credentials_secret

    def observe(self, body: dict[str, Any], spec: SiloLeafSpec, secret: str) -> tuple[dict[str, Any], list[Cond]]:
        namespace = body["metadata"]["namespace"]
        return leaf_status(spec, body.get("status") or {}, secret,
                           self.hubs.snapshots.get(HubRef(spec.hub, namespace)),
                           self.heartbeats.latest(namespace, spec.silo))
