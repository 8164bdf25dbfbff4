"""FleetUser handlers: credential, hub user and ingest durable on change and resync."""

from __future__ import annotations

import kopf

from fleetlattice.api.fleetuser import FleetUserSpec
from fleetlattice.clients.metrics import reconciling
from fleetlattice.handlers.common import USERS, runtime, write_status
from fleetlattice.logic.claims import oldest_claimant
from fleetlattice.logic.conditions import NotReady


@kopf.index(USERS)
def ingest_claims(namespace: str, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: object):
    """Who claims each ingest durable on each hub: two FleetUsers naming one would fight over its config."""
    ingest = spec.get("ingest")
    if meta.get("deletionTimestamp") or not ingest:
        return None
    return {(namespace, spec.get("hub"), ingest.get("stream"), ingest.get("durable")):
            (meta.get("creationTimestamp") or "", name)}


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, ingest_claims: kopf.Index, *,
                     retry: bool) -> None:
    spec = FleetUserSpec.model_validate(dict(body["spec"]))
    meta = body["metadata"]
    try:
        if spec.ingest:
            key = (meta["namespace"], spec.hub, spec.ingest.stream, spec.ingest.durable)
            owner = oldest_claimant(ingest_claims.get(key, ()), meta["name"])
            if owner != meta["name"]:
                raise NotReady("DuplicateConsumer", f"durable {spec.ingest.durable} on stream {spec.ingest.stream} "
                               f"already belongs to FleetUser {owner}")
        async with reconciling("FleetUser"):
            fields, conds = await runtime(memo).users.apply(dict(body), spec)
    except NotReady as exc:
        write_status(patch, body, {}, [exc.condition()])
        if retry:
            raise kopf.TemporaryError(str(exc), delay=10) from exc
        return
    write_status(patch, body, fields, conds)


@kopf.on.resume(USERS)
@kopf.on.create(USERS)
@kopf.on.update(USERS, field="spec")
async def user_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, ingest_claims: kopf.Index,
                       **_: object) -> None:
    await _reconcile(body, patch, memo, ingest_claims, retry=True)


@kopf.timer(USERS, interval=30.0, initial_delay=10.0)
async def user_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, ingest_claims: kopf.Index,
                      **_: object) -> None:
    """Restores a deleted credential Secret or ingest durable."""
    await _reconcile(body, patch, memo, ingest_claims, retry=False)


@kopf.on.event(USERS)
async def user_deleted(type: str, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: object) -> None:
    """Drop the user from the hub, which a reload disconnects; no finalizer: the hub's resync drops it anyway."""
    if type == "DELETED":
        await runtime(memo).users.deleted(namespace, name, dict(body["spec"]), dict(body.get("status") or {}))
