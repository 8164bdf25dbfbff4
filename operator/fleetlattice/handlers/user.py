"""FleetUser handlers: credential, hub user and ingest durable on change and resync."""

from __future__ import annotations

from typing import Any

import kopf

from fleetlattice.api.fleetuser import FleetUserSpec
from fleetlattice.clients.metrics import reconciling
from fleetlattice.handlers.common import USERS, converge, hub_spec, runtime
from fleetlattice.logic.claims import oldest_claimant
from fleetlattice.logic.conditions import Cond, NotReady


@kopf.index(USERS)
def ingest_claims(namespace: str, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: object):
    """Who claims each ingest durable on each hub: two FleetUsers naming one would fight over its config."""
    ingest = spec.get("ingest")
    if meta.get("deletionTimestamp") or not ingest:
        return None
    return {(namespace, spec.get("hub"), ingest.get("stream"), ingest.get("durable")):
            (meta.get("creationTimestamp") or "", name)}


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, ingest_claims: kopf.Index,
                     hub_specs: kopf.Index, leaf_bodies: kopf.Index, *, retry: bool) -> None:
    spec = FleetUserSpec.model_validate(dict(body["spec"]))
    meta = body["metadata"]

    async def work() -> tuple[dict[str, Any], list[Cond]]:
        if spec.ingest:
            key = (meta["namespace"], spec.hub, spec.ingest.stream, spec.ingest.durable)
            owner = oldest_claimant(ingest_claims.get(key, ()), meta["name"])
            if owner != meta["name"]:
                raise NotReady("DuplicateConsumer", f"durable {spec.ingest.durable} on stream {spec.ingest.stream} "
                               f"already belongs to FleetUser {owner}")
        async with reconciling("FleetUser"):
            return await runtime(memo).users.apply(dict(body), spec, hub_spec(hub_specs, meta["namespace"], spec.hub),
                                                   leaf_bodies, reread=not retry)

    await converge(patch, body, work, retry=retry, delay=10)


@kopf.on.resume(USERS)
@kopf.on.create(USERS)
@kopf.on.update(USERS, field="spec")
async def user_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, ingest_claims: kopf.Index,
                       hub_specs: kopf.Index, leaf_bodies: kopf.Index, **_: object) -> None:
    await _reconcile(body, patch, memo, ingest_claims, hub_specs, leaf_bodies, retry=True)


@kopf.timer(USERS, interval=30.0, initial_delay=10.0)
async def user_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, ingest_claims: kopf.Index,
                      hub_specs: kopf.Index, leaf_bodies: kopf.Index, **_: object) -> None:
    """Restores a deleted credential Secret or ingest durable."""
    await _reconcile(body, patch, memo, ingest_claims, hub_specs, leaf_bodies, retry=False)


@kopf.on.event(USERS)
async def user_deleted(type: str, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo,
                       leaf_bodies: kopf.Index, **_: object) -> None:
    """Drop the user from the hub, which a reload disconnects; no finalizer: the hub's resync drops it anyway."""
    if type == "DELETED":
        await runtime(memo).users.deleted(namespace, name, dict(body["spec"]), dict(body.get("status") or {}),
                                          leaf_bodies)
