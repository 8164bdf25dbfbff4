"""SiloLeaf handlers: credential, hub user and leaf on change; per FleetHub one loop that resyncs its leaves and
keeps their status from the hub's /leafz."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import kopf

from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.clients.metrics import reconciling
from fleetlattice.handlers.common import HUBS, LEAVES, converge, hub_spec, indexed_copy, runtime, write_status
from fleetlattice.logic.claims import oldest_claimant
from fleetlattice.logic.conditions import Cond, NotReady

log = logging.getLogger(__name__)


@kopf.index(LEAVES)
def leaf_claims(namespace: str, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: object):
    """Who claims each silo in each namespace, kept from the watch: the duplicate-silo check then costs no
    API call (listing every SiloLeaf for each of a thousand leaves was quadratic). Per namespace, not per
    hub: a silo's children (credential Secret, leaf Deployment) are named by silo alone, so the same silo on
    two hubs would overwrite one another's."""
    if meta.get("deletionTimestamp"):
        return None
    return {(namespace, spec.get("silo")): (meta.get("creationTimestamp") or "", name)}


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_claims: kopf.Index,
                     hub_specs: kopf.Index, leaf_bodies: kopf.Index, *, retry: bool) -> None:
    leaves = runtime(memo).leaves
    spec = SiloLeafSpec.model_validate(dict(body["spec"]))
    claims = leaf_claims.get((body["metadata"]["namespace"], spec.silo), ())

    async def work() -> tuple[dict[str, Any], list[Cond]]:
        async with reconciling("SiloLeaf"):
            secret = await leaves.apply(dict(body), spec, oldest_claimant(claims, body["metadata"]["name"]),
                                        hub_spec(hub_specs, body["metadata"]["namespace"], spec.hub),
                                        leaf_bodies, reread=not retry)
        await runtime(memo).installs.enlist_silo(body["metadata"]["namespace"], spec.hub, spec.silo)
        return leaves.observe(dict(body), spec, secret)

    await converge(patch, body, work, retry=retry, delay=10, not_ready={"connected": False})


@kopf.on.resume(LEAVES)
@kopf.on.create(LEAVES)
@kopf.on.update(LEAVES, field="spec")
async def leaf_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_claims: kopf.Index,
                       hub_specs: kopf.Index, leaf_bodies: kopf.Index, **_: object) -> None:
    await _reconcile(body, patch, memo, leaf_claims, hub_specs, leaf_bodies, retry=True)


# Every leaf of a hub is looked at this often (its status from the hub's latest scrape and the heartbeats), and
# re-applied (credentials, hub user, leaf workload: drift repair) every RESYNC_SECONDS.
STATUS_SECONDS = 5.0
RESYNC_SECONDS = 30.0
UPKEEP_CONCURRENCY = 16
LEAF_METADATA = ("name", "namespace", "uid", "generation", "creationTimestamp", "deletionTimestamp", "annotations")


@kopf.index(LEAVES)
def leaf_bodies(namespace: str, name: str, body: kopf.Body, **_: object):
    """kopf's copy of each SiloLeaf, for its hub's upkeep loop."""
    return {(namespace, name): indexed_copy(body, LEAF_METADATA)}


@dataclass
class _StatusPatch:
    """What write_status stages, for a write outside a kopf handler."""

    status: dict[str, Any] = field(default_factory=dict)


def _handled(body: dict[str, Any]) -> bool:
    """Whether the change handler has reconciled the leaf's current spec: until then it is that handler's (kopf
    retries it), and an upkeep resync would repeat the same work beside it (at a cold start of 1,000 silos it
    did, for the ~600 leaves whose creation kopf had not reached yet: ten times the hub renders)."""
    return (body.get("status") or {}).get("observedGeneration") == body["metadata"].get("generation")


def _first_resync_offset(uid: str) -> float:
    """Where in its first RESYNC_SECONDS a leaf's resyncs fall: after an operator restart every leaf is seen at
    once, and their resyncs would otherwise all come in the same round."""
    return zlib.crc32(uid.encode()) / 2**32 * RESYNC_SECONDS


@kopf.daemon(HUBS, cancellation_timeout=5.0)
async def leaf_upkeep(name: str, namespace: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                      leaf_bodies: kopf.Index, leaf_claims: kopf.Index, hub_specs: kopf.Index, **_: object) -> None:
    """One loop per hub for its SiloLeaves, not two kopf timers per leaf: kopf puts a finalizer on every object
    with a timer, and at 3,500 silos the timers' own machinery was a quarter of the event loop (py-spy). Each
    round writes the status of every reconciled leaf that changed; a resync (the leaf re-applied) runs beside
    the rounds, so a slow one never holds up the status of the others."""
    rt = runtime(memo)
    slots = asyncio.Semaphore(UPKEEP_CONCURRENCY)
    resynced_at: dict[str, float] = {}  # uid -> when its last resync was due (monotonic clock)
    resyncs: dict[str, asyncio.Task[None]] = {}

    async def upkeep(body: dict[str, Any], resync: bool = False, hub_gone: NotReady | None = None) -> None:
        patch = _StatusPatch()
        async with slots:
            try:
                if hub_gone is not None:
                    write_status(patch, body, {"connected": False}, [hub_gone.condition()])  # type: ignore[arg-type]
                elif resync:
                    await _reconcile(body, patch, memo, leaf_claims, hub_specs,  # type: ignore[arg-type]
                                     leaf_bodies, retry=False)
                elif secret := (body.get("status") or {}).get("credentialsSecret"):
                    fields, conds = rt.leaves.observe(body, SiloLeafSpec.model_validate(body["spec"]), secret)
                    write_status(patch, body, fields, conds)  # type: ignore[arg-type]
                if patch.status:
                    meta = body["metadata"]
                    await rt.kube.patch_status("SiloLeaf", meta["namespace"], meta["name"], patch.status)
            except Exception as exc:  # one leaf's trouble must not stop the others'
                log.warning("SiloLeaf %s/%s: upkeep failed: %s", body["metadata"]["namespace"],
                            body["metadata"]["name"], exc)

    def mine() -> list[dict[str, Any]]:
        return [b for (ns, _n), bodies in list(leaf_bodies.items()) if ns == namespace for b in bodies
                if b["spec"].get("hub") == name and not b["metadata"].get("deletionTimestamp")]

    try:
        while not stopped:
            started = time.monotonic()
            leaves = [b for b in mine() if _handled(b)]
            live = {b["metadata"]["uid"] for b in leaves}
            for uid in set(resynced_at) - live:
                del resynced_at[uid]
            observed = []
            for body in leaves:
                uid = body["metadata"]["uid"]
                if uid in resyncs:
                    continue
                if started - resynced_at.setdefault(uid, started + _first_resync_offset(uid)) < RESYNC_SECONDS:
                    observed.append(body)
                    continue
                resynced_at[uid] = started
                resyncs[uid] = asyncio.create_task(upkeep(body, resync=True))
                resyncs[uid].add_done_callback(lambda _task, uid=uid: resyncs.pop(uid, None))
            await asyncio.gather(*(upkeep(b) for b in observed))
            await stopped.wait(max(0.0, STATUS_SECONDS - (time.monotonic() - started)))
    finally:
        for task in list(resyncs.values()):
            task.cancel()
        await asyncio.gather(*resyncs.values(), return_exceptions=True)
    if stopped.reason is not None and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
        # No loop looks after these leaves any more: say why, or they would show Ready for a hub that is gone.
        gone = NotReady("HubNotFound", f"FleetHub {namespace}/{name} does not exist")
        await asyncio.gather(*(upkeep(b, hub_gone=gone) for b in mine()))


@kopf.on.event(LEAVES)
async def leaf_deleted(type: str, body: kopf.Body, namespace: str, memo: kopf.Memo, leaf_claims: kopf.Index,
                       leaf_bodies: kopf.Index, **_: object) -> None:
    """Drop the silo's user from the hub, which disconnects its leaf; children go by garbage
    collection. No finalizer: if the operator misses this, the hub's resync drops the user anyway."""
    if type == "DELETED":
        rt = runtime(memo)
        silo, hub = body["spec"]["silo"], body["spec"]["hub"]
        if not leaf_claims.get((namespace, silo)):  # a duplicate SiloLeaf going leaves the owner's consumer
            rt.leaves.forget(namespace, silo, (body["spec"].get("leaf") or {}).get("namespace"))
            # Before the render: one JetStream call that must not queue behind (or fail with) hub renders.
            await rt.installs.retire_silo(namespace, hub, silo)
        await rt.hubs.sync(namespace, hub, leaf_bodies)


def _leaf_elsewhere(spec: kopf.Spec, namespace: str, **_: object) -> bool:
    placed = (spec.get("leaf") or {}).get("namespace")
    return bool(placed) and placed != namespace


# Only a SiloLeaf whose leaf runs in another namespace gets a finalizer (kopf matches `when` before adding it):
# an owner reference cannot cross namespaces, so nothing else would remove what it put there.
@kopf.on.delete(LEAVES, when=_leaf_elsewhere)
async def leaf_elsewhere_deleted(body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    await runtime(memo).leaves.remove_children(dict(body), SiloLeafSpec.model_validate(dict(body["spec"])))
