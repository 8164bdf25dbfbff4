"""Status writing shared by the handlers: one owner per kind, conditions merged, no empty writes."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.handlers.runtime import Runtime
from fleetlattice.logic.conditions import Cond, NotReady, condition_notices, merge_conditions

GROUP = "fleet.lattice.dev"
HUBS = f"fleethubs.{GROUP}"
LEAVES = f"siloleaves.{GROUP}"
STREAMS = f"fleetstreams.{GROUP}"
INSTALLS = f"siloinstalls.{GROUP}"
USERS = f"fleetusers.{GROUP}"


def indexed_copy(body: kopf.Body, metadata: tuple[str, ...]) -> dict[str, Any]:
    """kopf's copy of an object for a per-hub loop's index: spec, status and only the `metadata` keys (no
    managedFields and the like, as a thousand of these live in memory), detached from kopf's own body."""
    meta = body["metadata"]
    return copy.deepcopy({
        "apiVersion": body["apiVersion"], "kind": body["kind"],
        "metadata": {key: meta[key] for key in metadata if key in meta},
        "spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {}),
    })


def runtime(memo: kopf.Memo) -> Runtime:
    """The Runtime `fleetlattice run` handed to kopf (every object's memo is a shallow copy of it)."""
    return memo["runtime"]


# The last parsed spec of each hub, with the raw spec it came from: validating a FleetHubSpec took 18 % of the
# event loop at a 3,500-silo cold start (py-spy), once per SiloLeaf reconcile, for the same few hubs.
_parsed_hubs: dict[tuple[str, str], tuple[dict[str, Any], FleetHubSpec]] = {}


def hub_spec(hub_specs: kopf.Index, namespace: str, hub: str) -> FleetHubSpec | None:
    """A FleetHub's spec from the `hub_specs` index (handlers.hub): the watch already holds it, so a thousand
    SiloLeaves reconciling need not each read it from the API, nor parse it again while it is unchanged."""
    for spec in hub_specs.get((namespace, hub), ()):
        cached = _parsed_hubs.get((namespace, hub))
        if cached is None or cached[0] != spec:
            cached = (spec, FleetHubSpec.model_validate(spec))
            _parsed_hubs[(namespace, hub)] = cached
        return cached[1]
    _parsed_hubs.pop((namespace, hub), None)
    return None


def write_status(patch: kopf.Patch, body: kopf.Body, fields: dict[str, Any], conds: list[Cond]) -> None:
    """Stage a status patch, only with what differs, so a steady state costs no API writes. Each condition
    that changes (a leaf connects or drops, a hub loads a new config, a stream is refused) is also an Event,
    so `kubectl describe` and `kubectl get events` tell the story."""
    current = dict(body.get("status") or {})
    generation = body["metadata"].get("generation")
    desired = dict(fields)
    desired["observedGeneration"] = generation
    desired["conditions"] = merge_conditions(current.get("conditions"), conds, generation)
    for notice in condition_notices(current.get("conditions"), desired["conditions"]):
        kopf.event(body, type=notice.type, reason=notice.reason, message=notice.message)
    for key, value in desired.items():
        if current.get(key) != value:
            patch.status[key] = value


async def converge(patch: kopf.Patch, body: kopf.Body, work: Callable[[], Awaitable[tuple[dict[str, Any], list[Cond]]]],
                   *, retry: bool, delay: float, not_ready: dict[str, Any] | None = None) -> None:
    """Run one reconcile and stage its status. NotReady becomes Ready=False with its reason (and the
    `not_ready` fields); change handlers (`retry`) then ask kopf to try again after `delay` seconds, timers
    just wait for their next tick."""
    try:
        fields, conds = await work()
    except NotReady as exc:
        write_status(patch, body, not_ready or {}, [exc.condition()])
        if retry:
            raise kopf.TemporaryError(str(exc), delay=delay) from exc
        return
    write_status(patch, body, fields, conds)
