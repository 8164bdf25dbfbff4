"""FleetHub apply layer: credentials, the rendered config and children, and the servers' status."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from .api.fleethub import FleetHubSpec
from .api.siloleaf import SiloLeafSpec
from .conditions import owner_reference
from .context import Context
from .credentials import Credential
from .hub_status import hub_status, parse_time
from .monitoring import scrape_all
from .natsconn import OPERATOR_USER, SYSTEM_USER
from .render.hub_conf import HubUsers, SiloUser, render_hub_conf, restart_hash
from .render.hub_manifests import render_hub_manifests
from .render.names import CONFIG_HASH_ANNOTATION, SILO_LABEL, HubRef, SiloRef

log = logging.getLogger(__name__)


async def ensure_hub_auth(ctx: Context, hub: HubRef, owner: dict[str, Any]) -> tuple[Credential, Credential]:
    """The operator's and the system account's users: generated once, kept in `<hub>-auth`."""
    secret = await ctx.kube.get("Secret", hub.namespace, hub.auth_secret)
    data = (secret or {}).get("data", {})
    operator = Credential.from_secret(data, "operator-")
    system = Credential.from_secret(data, "system-")
    if operator and system:
        return operator, system
    # bcrypt is slow by design: off the event loop, like the silos' credentials.
    operator = operator or await asyncio.to_thread(Credential.generate, OPERATOR_USER)
    system = system or await asyncio.to_thread(Credential.generate, SYSTEM_USER)
    await ctx.kube.apply({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": hub.auth_secret, "namespace": hub.namespace, "labels": hub.labels,
                     "ownerReferences": [owner_reference(owner)]},
        "data": {**operator.secret_data("operator-"), **system.secret_data("system-")},
    })
    return operator, system


async def silo_users(ctx: Context, hub: HubRef) -> tuple[SiloUser, ...]:
    """One user per live SiloLeaf of this hub whose credential exists; the first claimant of a
    silo name wins, so a duplicate SiloLeaf cannot take over another's identity."""
    leaves = await ctx.kube.list("SiloLeaf", hub.namespace)
    # One list call for all credentials, not one get per silo: this runs on every hub resync.
    secrets = {s["metadata"]["name"]: s.get("data", {})
               for s in await ctx.kube.list("Secret", hub.namespace, labels=SILO_LABEL)}
    leaves.sort(key=lambda leaf: (leaf["metadata"]["creationTimestamp"], leaf["metadata"]["name"]))
    users: dict[str, SiloUser] = {}
    for leaf in leaves:
        if leaf["metadata"].get("deletionTimestamp") or leaf.get("spec", {}).get("hub") != hub.name:
            continue
        try:
            spec = SiloLeafSpec.model_validate(leaf["spec"])
        except ValueError:
            continue
        if spec.silo in users:
            continue
        cred = Credential.from_secret(secrets.get(SiloRef(spec.silo).credentials_secret, {}))
        if cred:
            users[spec.silo] = SiloUser(spec.silo, cred.bcrypt_hash, spec.permissions)
    return tuple(users[s] for s in sorted(users))


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def conf_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def apply_hub(ctx: Context, body: dict[str, Any]) -> dict[str, str]:
    """Render and server-side-apply everything the hub owns. Returns the hashes for status."""
    meta = body["metadata"]
    hub = HubRef(meta["name"], meta["namespace"])
    spec = FleetHubSpec.model_validate(body.get("spec") or {})
    async with ctx.config_lock(hub):
        operator, system = await ensure_hub_auth(ctx, hub, body)
        users = HubUsers(operator=(operator.user, operator.bcrypt_hash), system=(system.user, system.bcrypt_hash),
                         silos=await silo_users(ctx, hub))
        text = render_hub_conf(hub, spec, users)
        rhash = restart_hash(hub, spec)
        current = await ctx.kube.get("ConfigMap", hub.namespace, hub.config_map)
        changed = current is None or text not in ((current.get("data") or {}).values())
        if changed:
            # Taken before the write: no server can load the new config earlier than this.
            ctx.config_written_at[hub] = datetime.now(UTC)
        for manifest in render_hub_manifests(hub, spec, text, rhash):
            manifest["metadata"].setdefault("ownerReferences", [owner_reference(body)])
            await ctx.kube.apply(manifest)
        ctx.rendered_silo_hashes[hub] = frozenset(silo.bcrypt_hash for silo in users.silos)
        if changed and current is not None:
            await _nudge_servers(ctx, hub, conf_hash(text))
    return {"configHash": conf_hash(text), "restartHash": rhash}


async def _hub_pods(ctx: Context, hub: HubRef) -> list[dict[str, Any]]:
    return await ctx.kube.list("Pod", hub.namespace, labels=",".join(f"{k}={v}" for k, v in hub.selector.items()))


async def _nudge_servers(ctx: Context, hub: HubRef, config_hash: str) -> None:
    """Kubelet rewrites a mounted ConfigMap only when it syncs the pod: periodically (a minute or more
    after the write, measured in bench/) or when the pod changes. Annotating each server's pod with the
    new config's hash makes kubelet sync it now, so the reloader sees the file and signals the server
    within about a second. The annotation is not in the pod template: nothing restarts."""
    for pod in await _hub_pods(ctx, hub):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        try:
            annotations = {CONFIG_HASH_ANNOTATION: config_hash}
            await ctx.kube.apply({"apiVersion": "v1", "kind": "Pod",
                                  "metadata": {"name": meta["name"], "namespace": hub.namespace,
                                               "annotations": annotations}})
        except ApiException as exc:
            # Gone since the list (its replacement mounts the new config): the apply would try to create it.
            if exc.status not in (404, 422):
                raise


async def sync_hub_config(ctx: Context, namespace: str, hub_name: str) -> bool:
    """Re-render a hub after its set of silos changed. False if the hub does not exist. Many SiloLeaves
    asking at once (start-up, a GitOps sync of a thousand silos) share one render."""
    return await ctx.hub_syncs.run(HubRef(hub_name, namespace))


async def render_hub_now(ctx: Context, hub: HubRef) -> bool:
    body = await ctx.kube.get("FleetHub", hub.namespace, hub.name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return False
    await apply_hub(ctx, body)
    return True


async def observe_hub(ctx: Context, body: dict[str, Any], hashes: dict[str, str]) -> dict[str, Any]:
    """Status fields and conditions from the servers, plus config bookkeeping."""
    meta = body["metadata"]
    hub = HubRef(meta["name"], meta["namespace"])
    spec = FleetHubSpec.model_validate(body.get("spec") or {})
    status = body.get("status") or {}
    now = datetime.now(UTC)
    # The write time this process saw; after a restart, the one status kept from before.
    changed_at = ctx.config_written_at.get(hub) or parse_time(status.get("configChangedAt")) or now
    pods = await _hub_pods(ctx, hub)
    targets = [(p["metadata"]["name"], p["status"]["podIP"]) for p in pods
               if p.get("status", {}).get("podIP") and not p["metadata"].get("deletionTimestamp")]
    snapshots = await scrape_all(sorted(targets), spec.ports.monitoring)
    # A server that answers /healthz but whose pod is not Ready (a sidecar down, say) is not counted.
    not_ready = {p["metadata"]["name"] for p in pods if not _pod_ready(p)}
    for snap in snapshots:
        if snap.pod in not_ready and snap.healthy:
            snap.healthy, snap.error = False, "pod not Ready (see kubectl describe pod)"
    ctx.snapshots[hub] = snapshots
    sts = await ctx.kube.get("StatefulSet", hub.namespace, hub.statefulset) or {}
    sts_status = sts.get("status", {})
    rolling = bool(sts) and (
        sts_status.get("observedGeneration", 0) < sts.get("metadata", {}).get("generation", 0)
        or sts_status.get("updateRevision") != sts_status.get("currentRevision")
    )
    fields, conds = hub_status(spec.replicas, snapshots, changed_at, rolling)
    fields.update(hashes, configChangedAt=changed_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                  clientUrl=hub.client_url(spec.ports.client),
                  leafnodeUrl=hub.leafnode_url(spec.leafnodes.advertise, spec.ports.leafnodes))
    return {"fields": fields, "conditions": conds}
