"""SiloLeaf handlers: credential, hub user and leaf on change and resync; status from the hub's /leafz."""

from __future__ import annotations

import kopf

from ..conditions import Cond
from ..hub_reconcile import sync_hub_config
from ..leaf_reconcile import LeafNotReady, apply_leaf, observe_leaf, oldest_claimant
from ..metrics import reconciling
from .common import context, write_status

LEAVES = "siloleaves.fleet.lattice.dev"


@kopf.index(LEAVES)
def leaf_claims(namespace: str, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: object):
    """Who claims each silo on each hub, kept from the watch: the duplicate-silo check then costs no
    API call (listing every SiloLeaf for each of a thousand leaves was quadratic)."""
    if meta.get("deletionTimestamp"):
        return None
    return {(namespace, spec.get("hub"), spec.get("silo")): (meta.get("creationTimestamp") or "", name)}


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_claims: kopf.Index, *,
                     retry: bool) -> None:
    ctx = context(memo)
    spec = body["spec"]
    claims = leaf_claims.get((body["metadata"]["namespace"], spec.get("hub"), spec.get("silo")), ())
    try:
        async with reconciling("SiloLeaf"):
            secret = await apply_leaf(ctx, dict(body), oldest_claimant(claims, body["metadata"]["name"]))
    except LeafNotReady as exc:
        write_status(patch, body, {"connected": False}, [Cond.false("Ready", exc.reason, str(exc))])
        if retry:
            raise kopf.TemporaryError(str(exc), delay=10) from exc
        return
    fields, conds = observe_leaf(ctx, dict(body), secret)
    write_status(patch, body, fields, conds)


@kopf.on.resume(LEAVES)
@kopf.on.create(LEAVES)
@kopf.on.update(LEAVES, field="spec")
async def leaf_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_claims: kopf.Index,
                       **_: object) -> None:
    await _reconcile(body, patch, memo, leaf_claims, retry=True)


@kopf.timer(LEAVES, interval=30.0, initial_delay=10.0)
async def leaf_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_claims: kopf.Index,
                      **_: object) -> None:
    await _reconcile(body, patch, memo, leaf_claims, retry=False)


@kopf.timer(LEAVES, interval=5.0, initial_delay=5.0)
async def leaf_status(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: object) -> None:
    """Cheap: reads the hub scrape the FleetHub timer already made."""
    secret = (body.get("status") or {}).get("credentialsSecret")
    if secret:
        fields, conds = observe_leaf(context(memo), dict(body), secret)
        write_status(patch, body, fields, conds)


@kopf.on.event(LEAVES)
async def leaf_deleted(type: str, body: kopf.Body, namespace: str, memo: kopf.Memo, **_: object) -> None:
    """Drop the silo's user from the hub, which disconnects its leaf; children go by garbage
    collection. No finalizer: if the operator misses this, the hub's resync drops the user anyway."""
    if type == "DELETED":
        await sync_hub_config(context(memo), namespace, body["spec"]["hub"])
