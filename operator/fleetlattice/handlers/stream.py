"""FleetStream handlers: converge on change and on every resync (drift repair, recovery)."""

from __future__ import annotations

from typing import Any

import kopf

from fleetlattice.api.fleetstream import FleetStreamSpec
from fleetlattice.apply.stream import delete_stream, reconcile_stream
from fleetlattice.clients.metrics import reconciling
from fleetlattice.handlers.common import STREAMS, converge, runtime
from fleetlattice.logic.claims import oldest_claimant
from fleetlattice.logic.conditions import Cond, NotReady
from fleetlattice.logic.times import seconds_since
from fleetlattice.render.stream import stream_name


@kopf.index(STREAMS)
def stream_claims(namespace: str, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: object):
    """Who claims each stream on each hub: two FleetStreams naming one stream would fight over its config,
    and a Delete of one would drop the other's stream. The oldest owns it."""
    if meta.get("deletionTimestamp"):
        return None
    server_name = f"KV_{spec.get('name')}" if spec.get("kind") == "KeyValue" else spec.get("name")
    return {(namespace, spec.get("hub"), server_name): (meta.get("creationTimestamp") or "", name)}


def _owner(body: kopf.Body, spec: FleetStreamSpec, stream_claims: kopf.Index) -> str:
    meta = body["metadata"]
    claims = stream_claims.get((meta["namespace"], spec.hub, stream_name(spec)), ())
    return oldest_claimant(claims, meta["name"])


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, namespace: str, stream_claims: kopf.Index,
                     *, retry: bool) -> None:
    rt = runtime(memo)
    spec = FleetStreamSpec.model_validate(dict(body["spec"]))

    async def work() -> tuple[dict[str, Any], list[Cond]]:
        owner = _owner(body, spec, stream_claims)
        if owner != body["metadata"]["name"]:
            raise NotReady("DuplicateStream", f"stream {stream_name(spec)} on hub {spec.hub} already belongs to "
                           f"FleetStream {owner}; this one changes nothing")
        async with reconciling("FleetStream"):
            return await reconcile_stream(rt.kube, rt.connections, namespace, spec)

    await converge(patch, body, work, retry=retry, delay=5)


@kopf.on.resume(STREAMS)
@kopf.on.create(STREAMS)
@kopf.on.update(STREAMS, field="spec")
async def stream_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, namespace: str,
                         stream_claims: kopf.Index, **_: object) -> None:
    await _reconcile(body, patch, memo, namespace, stream_claims, retry=True)


@kopf.timer(STREAMS, interval=30.0, initial_delay=10.0)
async def stream_resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, namespace: str,
                        stream_claims: kopf.Index, **_: object) -> None:
    """Restores a stream changed or deleted behind the operator's back, and refreshes status."""
    await _reconcile(body, patch, memo, namespace, stream_claims, retry=False)


# Only streams with deletionPolicy Delete get a finalizer: kopf matches the filter before adding it.
@kopf.on.delete(STREAMS, field="spec.deletionPolicy", value="Delete")
async def stream_deleted(body: kopf.Body, memo: kopf.Memo, namespace: str, logger: kopf.Logger,
                         stream_claims: kopf.Index, **_: object) -> None:
    rt = runtime(memo)
    spec = FleetStreamSpec.model_validate(dict(body["spec"]))
    # Deleting, this object is no longer in the index: another live claimant means the stream is theirs.
    others = stream_claims.get((namespace, spec.hub, stream_name(spec)), ())
    if any(claim_name != body["metadata"]["name"] for _created, claim_name in others):
        logger.info("stream %s belongs to another FleetStream; not deleting it", stream_name(spec))
        return
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
