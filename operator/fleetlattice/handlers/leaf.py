"""SiloLeaf handlers: credential, hub user and leaf on change and resync; status from the hub's /leafz."""

from __future__ import annotations

from typing import Any

import kopf

from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.clients.metrics import reconciling
from fleetlattice.handlers.common import LEAVES, converge, hub_spec, runtime, write_status
from fleetlattice.logic.claims import oldest_claimant
from fleetlattice.logic.conditions import Cond


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
                     hub_specs: kopf.Index, *, retry: bool) -> None:
    leaves = runtime(memo).leaves
    spec = SiloLeafSpec.model_validate(dict(body["spec"]))
    claims = leaf_claims.get((body["metadata"]["namespace"], spec.silo), ())

    async def work() -> tuple[dict[str, Any], list[Cond]]:
        async with reconciling("SiloLeaf"):
            secret = await leaves.apply(dict(body), spec, oldest_claimant(claims, body["metadata"]["name"]),
                                        hub_spec(hub_specs, body["metadata"]["namespace"], spec.hub),
                                        reread=not retry)
        await runtime(memo).installs.enlist_silo(body["metadata"]["namespace"], spec.hub, spec.silo)
        return leaves.observe(dict(body), spec, secret)

    await converge(patch, body, work, retry=retry, delay=10, not_ready={"connected": False})


@kopf.on.resume(LEAVES)
@kopf.on.create(LEAVES)
@kopf.on.update(LEAVES, field="spec")
async def leaf_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_claims: kopf.Index,
                       hub_specs: kopf.Index, **_: object) -> None:
    await _reconcile(body, patch, memo, leaf_claims, hub_specs, retry=True)


# The first resync one interval after the create handler, not 10 s: during a cold start of a thousand silos
# an early resync repeats every reconcile the create handlers are still doing.
@kopf.timer(LEAVES, interval=30.0, initial_delay=30.0)
async def leaf_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_claims: kopf.Index,
                      hub_specs: kopf.Index, **_: object) -> None:
    await _reconcile(body, patch, memo, leaf_claims, hub_specs, retry=False)


@kopf.timer(LEAVES, interval=5.0, initial_delay=5.0)
async def leaf_status(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: object) -> None:
    """Cheap: reads the hub scrape the FleetHub timer already made."""
    secret = (body.get("status") or {}).get("credentialsSecret")
    if secret:
        fields, conds = runtime(memo).leaves.observe(dict(body), SiloLeafSpec.model_validate(dict(body["spec"])),
                                                     secret)
        write_status(patch, body, fields, conds)


@kopf.on.event(LEAVES)
async def leaf_deleted(type: str, body: kopf.Body, namespace: str, memo: kopf.Memo, leaf_claims: kopf.Index,
                       **_: object) -> None:
    """Drop the silo's user from the hub, which disconnects its leaf; children go by garbage
    collection. No finalizer: if the operator misses this, the hub's resync drops the user anyway."""
    if type == "DELETED":
        rt = runtime(memo)
        silo, hub = body["spec"]["silo"], body["spec"]["hub"]
        if not leaf_claims.get((namespace, silo)):  # a duplicate SiloLeaf going leaves the owner's consumer
            rt.leaves.forget(namespace, silo, (body["spec"].get("leaf") or {}).get("namespace"))
            # Before the render: one JetStream call that must not queue behind (or fail with) hub renders.
            await rt.installs.retire_silo(namespace, hub, silo)
        await rt.hubs.sync(namespace, hub)


def _leaf_elsewhere(spec: kopf.Spec, namespace: str, **_: object) -> bool:
    placed = (spec.get("leaf") or {}).get("namespace")
    return bool(placed) and placed != namespace


# Only a SiloLeaf whose leaf runs in another namespace gets a finalizer (kopf matches `when` before adding it):
# an owner reference cannot cross namespaces, so nothing else would remove what it put there.
@kopf.on.delete(LEAVES, when=_leaf_elsewhere)
async def leaf_elsewhere_deleted(body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    await runtime(memo).leaves.remove_children(dict(body), SiloLeafSpec.model_validate(dict(body["spec"])))
