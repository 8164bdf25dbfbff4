"""FleetHub handlers: apply children on change and on every resync, read status from the servers."""

from __future__ import annotations

from typing import Any

import kopf

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.clients.metrics import reconciling
from fleetlattice.handlers.common import HUBS, converge, runtime, write_status
from fleetlattice.logic.conditions import Cond
from fleetlattice.render.names import HubRef


@kopf.index(HUBS)
def hub_specs(namespace: str, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: object):
    """Every live FleetHub's spec, for the handlers of the kinds that name a hub (see common.hub_spec)."""
    if meta.get("deletionTimestamp"):
        return None
    return {(namespace, name): dict(spec)}


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_bodies: kopf.Index, *,
                     retry: bool) -> None:
    hubs = runtime(memo).hubs
    spec = FleetHubSpec.model_validate(dict(body.get("spec") or {}))

    async def work() -> tuple[dict[str, Any], list[Cond]]:
        async with reconciling("FleetHub"):
            hashes = await hubs.apply(dict(body), spec, leaf_bodies)
            result = await hubs.observe(dict(body), spec, hashes)
        return result["fields"], result["conditions"]

    await converge(patch, body, work, retry=retry, delay=30)


@kopf.on.resume(HUBS)
@kopf.on.create(HUBS)
@kopf.on.update(HUBS, field="spec")
async def hub_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_bodies: kopf.Index,
                      **_: object) -> None:
    await _reconcile(body, patch, memo, leaf_bodies, retry=True)


@kopf.timer(HUBS, interval=30.0, initial_delay=30.0)
async def hub_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, leaf_bodies: kopf.Index,
                     **_: object) -> None:
    """Drift repair of the children (and of silo users missed while the operator was down)."""
    await _reconcile(body, patch, memo, leaf_bodies, retry=False)


@kopf.timer(HUBS, interval=10.0, initial_delay=5.0)
async def hub_status(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: object) -> None:
    """Fresh status from the servers only: re-applying every child this often would cost a dozen API
    calls per hub for nothing."""
    status = body.get("status") or {}
    hashes = {"configHash": status.get("configHash", ""), "restartHash": status.get("restartHash", "")}
    spec = FleetHubSpec.model_validate(dict(body.get("spec") or {}))
    result = await runtime(memo).hubs.observe(dict(body), spec, hashes)
    write_status(patch, body, result["fields"], result["conditions"])


@kopf.on.delete(HUBS, optional=True)
async def hub_deleted(name: str, namespace: str, memo: kopf.Memo, **_: object) -> None:
    """Children go by garbage collection; only the shared connection and what we remember need closing."""
    rt = runtime(memo)
    hub = HubRef(name, namespace)
    await rt.connections.close(hub)
    rt.hubs.forget(hub)
