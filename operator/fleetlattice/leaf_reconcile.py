"""SiloLeaf apply layer: the silo's credential, its user on the hub, its leaf, and its status."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from typing import Any

from .api.fleethub import FleetHubSpec
from .api.messages import SiloState
from .api.siloleaf import SiloLeafSpec
from .conditions import Cond, now_iso, owner_reference
from .context import Context
from .credentials import Credential, b64
from .hub_reconcile import sync_hub_config
from .hub_status import parse_time
from .render.leaf import leaf_remote_url, render_leaf_manifests
from .render.names import HubRef, SiloRef

CREDENTIAL_CHECKSUM_ANNOTATION = "fleet.lattice.dev/credential-checksum"


class LeafNotReady(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def oldest_claimant(claims: Iterable[tuple[str, str]], name: str) -> str:
    """The SiloLeaf that owns a silo on a hub: the oldest of the live ones claiming it, given as
    (creationTimestamp, name) pairs; `name` itself when the claims do not list it yet."""
    return min(claims, default=("", name))[1]


async def ensure_credential(ctx: Context, body: dict[str, Any], hub_spec: FleetHubSpec, hub: HubRef) -> Credential:
    """Generate the silo's credential once. Deleting the Secret rotates it: a new one is made here,
    the hub reloads the new hash and the leaf Deployment rolls (its pod template carries the hash)."""
    spec = SiloLeafSpec.model_validate(body["spec"])
    silo = SiloRef(spec.silo)
    namespace = body["metadata"]["namespace"]
    async with ctx.credential_lock(namespace, spec.silo):
        secret = await ctx.kube.get("Secret", namespace, silo.credentials_secret)
        data = (secret or {}).get("data", {})
        cred = Credential.from_secret(data)
        if cred is None or cred.user != spec.silo:
            # bcrypt is slow by design (~0.2s): in a thread, or a thousand new silos stall every handler.
            cred = await asyncio.to_thread(Credential.generate, spec.silo)
        url = leaf_remote_url(hub.leafnode_url(hub_spec.leafnodes.advertise, hub_spec.ports.leafnodes), cred.user,
                              cred.password)
        wanted = {**cred.secret_data(), "url": b64(url)}
        if secret is None or any(data.get(k) != v for k, v in wanted.items()):
            await ctx.kube.apply({
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": silo.credentials_secret, "namespace": namespace, "labels": silo.labels,
                             "ownerReferences": [owner_reference(body)]},
                "data": wanted,
            })
    return cred


def _hub_lacks_user(ctx: Context, hub: HubRef, cred: Credential) -> bool:
    """Whether the config this process last wrote for the hub misses this credential (or it has written
    none yet). Answered from memory: a resync of a thousand unchanged SiloLeaves then reads nothing,
    where reading the hub's ConfigMap (a thousand users) each time cost megabytes per leaf."""
    known = ctx.rendered_silo_hashes.get(hub)
    return known is None or cred.bcrypt_hash not in known


async def apply_leaf(ctx: Context, body: dict[str, Any], claimant: str) -> str:
    """Everything a SiloLeaf owns. Returns the credentials Secret name. `claimant` is the SiloLeaf that
    owns this silo on this hub (see oldest_claimant)."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    spec = SiloLeafSpec.model_validate(body["spec"])
    hub_body = await ctx.kube.get("FleetHub", namespace, spec.hub)
    if hub_body is None:
        raise LeafNotReady("HubNotFound", f"FleetHub {namespace}/{spec.hub} does not exist")
    if claimant != meta["name"]:
        raise LeafNotReady("DuplicateSilo", f"silo {spec.silo} already belongs to SiloLeaf {claimant} on this hub")
    hub_spec = FleetHubSpec.model_validate(hub_body.get("spec") or {})
    hub = HubRef(spec.hub, namespace)
    cred = await ensure_credential(ctx, body, hub_spec, hub)
    if _hub_lacks_user(ctx, hub, cred) or meta.get("generation") != (body.get("status") or {}).get(
            "observedGeneration"):
        await sync_hub_config(ctx, namespace, spec.hub)
    if spec.leaf.mode == "InCluster":
        for manifest in render_leaf_manifests(spec, namespace, hub_tls=hub_spec.tls.enabled):
            manifest["metadata"].setdefault("ownerReferences", [owner_reference(body)])
            if manifest["kind"] == "Deployment":
                # A rotated credential must roll the leaf: its env var is only read at start.
                annotations = manifest["spec"]["template"]["metadata"].setdefault("annotations", {})
                annotations[CREDENTIAL_CHECKSUM_ANNOTATION] = hashlib.sha256(cred.bcrypt_hash.encode()).hexdigest()[:16]
            await ctx.kube.apply(manifest)
    return SiloRef(spec.silo).credentials_secret


def leaf_connection(ctx: Context, namespace: str, spec: SiloLeafSpec) -> dict[str, Any] | None:
    """The silo's leaf as the hub's latest /leafz scrape lists it, with the server that holds it."""
    for snap in ctx.snapshots.get(HubRef(spec.hub, namespace), []):
        for leaf in snap.leafz.get("leafs") or []:
            if leaf.get("name") == SiloRef(spec.silo).leaf:
                return {**leaf, "hubServer": snap.pod}
    return None


HEARTBEAT_REFRESH_SECONDS = 30


def _heartbeat_fields(state: SiloState | None, previous: dict[str, Any]) -> dict[str, Any]:
    """The agent's last heartbeat, refreshed coarsely: writing every beat would cost one API write per
    silo every few seconds for a number nobody reads that precisely."""
    if state is None:
        return {}
    stored = parse_time(previous.get("lastHeartbeat"))
    fresh = stored is None or (state.ts - stored).total_seconds() >= HEARTBEAT_REFRESH_SECONDS
    ts = state.ts if fresh else stored
    return {"lastHeartbeat": ts.isoformat().replace("+00:00", "Z"), "installedVersion": state.version or ""}


def observe_leaf(ctx: Context, body: dict[str, Any], secret: str) -> tuple[dict[str, Any], list[Cond]]:
    namespace = body["metadata"]["namespace"]
    spec = SiloLeafSpec.model_validate(body["spec"])
    previous = body.get("status") or {}
    found = leaf_connection(ctx, namespace, spec)
    fields: dict[str, Any] = {"credentialsSecret": secret, "connected": found is not None,
                              **_heartbeat_fields(ctx.heartbeats.get((namespace, spec.silo)), previous)}
    if found is None:
        fields.update(rtt="", hubServer="", connectedSince=None)
        waiting = "the hub has not been scraped yet" if HubRef(spec.hub, namespace) not in ctx.snapshots else (
            "apply the bundle from `fleetlattice leaf export` in the silo's cluster"
            if spec.leaf.mode == "External" else "the leaf has not connected to the hub yet")
        return fields, [Cond.false("Connected", "LeafNotConnected", waiting),
                        Cond.false("Ready", "LeafNotConnected", waiting)]
    since = previous.get("connectedSince") if previous.get("connected") else None
    fields.update(rtt=found.get("rtt", ""), hubServer=found["hubServer"], connectedSince=since or now_iso())
    message = f"connected to {found['hubServer']} (rtt {found.get('rtt', '?')})"
    return fields, [Cond.true("Connected", "LeafConnected", message), Cond.true("Ready", "LeafConnected", message)]
