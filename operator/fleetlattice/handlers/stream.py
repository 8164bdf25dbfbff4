"""FleetStream handlers: converge on change and on every resync (drift repair, recovery)."""

from __future__ import annotations

import kopf

from fleetlattice.api.fleetstream import FleetStreamSpec
from fleetlattice.apply.stream import delete_stream, reconcile_stream
from fleetlattice.clients.metrics import reconciling
from fleetlattice.handlers.common import STREAMS, runtime, write_status
from fleetlattice.logic.conditions import NotReady
from fleetlattice.logic.times import seconds_since


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, namespace: str, *, retry: bool) -> None:
    rt = runtime(memo)
    spec = FleetStreamSpec.model_validate(dict(body["spec"]))
    try:
        async with reconciling("FleetStream"):
            fields, conds = await reconcile_stream(rt.kube, rt.connections, namespace, spec)
    except NotReady as exc:
        write_status(patch, body, {}, [exc.condition()])
        if retry:
            raise kopf.TemporaryError(str(exc), delay=5) from exc
        return
    write_status(patch, body, fields, conds)


@kopf.on.resume(STREAMS)
@kopf.on.create(STREAMS)
@kopf.on.update(STREAMS, field="spec")
async def stream_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, namespace: str, **_: object) -> None:
    await _reconcile(body, patch, memo, namespace, retry=True)


@kopf.timer(STREAMS, interval=30.0, initial_delay=10.0)
async def stream_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, namespace: str, **_: object) -> None:
    """Restores a stream changed or deleted behind the operator's back, and refreshes status."""
    await _reconcile(body, patch, memo, namespace, retry=False)


# Only streams with deletionPolicy Delete get a finalizer: kopf matches the filter before adding it.
@kopf.on.delete(STREAMS, field="spec.deletionPolicy", value="Delete")
async def stream_deleted(body: kopf.Body, memo: kopf.Memo, namespace: str, logger: kopf.Logger, **_: object) -> None:
    rt = runtime(memo)
    spec = FleetStreamSpec.model_validate(dict(body["spec"]))
    try:
        await delete_stream(rt.kube, rt.connections, namespace, spec)
    except NotReady as exc:
        waited = seconds_since(body["metadata"].get("deletionTimestamp"))
        if waited < rt.settings.delete_timeout_seconds:
            raise kopf.TemporaryError(f"cannot delete stream yet: {exc}", delay=10) from exc
        # Never hang deletion forever on a hub that is gone: say so and let go.
        kopf.warn(body, reason="StreamNotDeleted",
                  message=f"gave up deleting stream {spec.name} after {waited:.0f}s: {exc}")
        logger.warning("released FleetStream without deleting its stream: %s", exc)
