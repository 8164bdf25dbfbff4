"""SiloInstall handlers: indexes for routing, requests on change, a timer for deadlines and
heartbeats, scrub on delete, and one install-bus consumer daemon per FleetHub."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from ..api.base import duration_seconds
from ..api.siloinstall import SiloInstallSpec, SiloInstallStatus
from ..conditions import Cond
from ..hub_status import parse_time
from ..install_bus import BusNotReady
from ..install_controller import BusConsumer, advance, index_entry, start_scrub, tick
from ..metrics import reconciling
from ..render.names import HubRef
from .common import context, write_status

INSTALLS = "siloinstalls.fleet.lattice.dev"
LEAVES = "siloleaves.fleet.lattice.dev"
HUBS = "fleethubs.fleet.lattice.dev"


@kopf.index(INSTALLS)
def installs_by_uid(namespace: str, name: str, uid: str, spec: kopf.Spec, status: kopf.Status, **_: Any):
    return {uid: index_entry(namespace, name, spec, status)}


@kopf.index(INSTALLS)
def installs_by_silo(namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any):
    return {(namespace, spec.get("silo")): index_entry(namespace, name, spec, status)}


@kopf.index(LEAVES)
def hub_by_silo(namespace: str, spec: kopf.Spec, **_: Any):
    return {(namespace, spec.get("silo")): spec.get("hub")}


def _hub_of(namespace: str, silo: str, hub_by_silo: kopf.Index) -> str:
    hubs = sorted(hub_by_silo.get((namespace, silo), ()))
    if not hubs:
        raise BusNotReady("SiloUnknown", f"no SiloLeaf for silo {silo} in namespace {namespace}")
    return hubs[0]


def _not_ready(patch: kopf.Patch, body: kopf.Body, exc: BusNotReady) -> None:
    phase = (body.get("status") or {}).get("phase") or "Pending"
    write_status(patch, body, {"phase": phase}, [Cond.false("Ready", exc.reason, str(exc))])


@kopf.on.resume(INSTALLS)
@kopf.on.create(INSTALLS)
@kopf.on.update(INSTALLS, field="spec")
async def install_changed(body: kopf.Body, patch: kopf.Patch, namespace: str, name: str, memo: kopf.Memo,
                          hub_by_silo: kopf.Index, **_: Any) -> None:
    ctx = context(memo)
    try:
        hub = _hub_of(namespace, body["spec"]["silo"], hub_by_silo)
        async with reconciling("SiloInstall"):
            await advance(ctx, ctx.installs, namespace, name, hub)
    except BusNotReady as exc:
        _not_ready(patch, body, exc)
        raise kopf.TemporaryError(str(exc), delay=5) from exc


@kopf.timer(INSTALLS, interval=5.0, initial_delay=2.0)
async def install_tick(body: kopf.Body, patch: kopf.Patch, namespace: str, name: str, memo: kopf.Memo,
                       hub_by_silo: kopf.Index, **_: Any) -> None:
    if body["metadata"].get("deletionTimestamp"):
        return
    ctx = context(memo)
    try:
        hub = _hub_of(namespace, body["spec"]["silo"], hub_by_silo)
        await tick(ctx, ctx.installs, namespace, name, hub, body["spec"]["silo"], dict(body))
    except BusNotReady as exc:
        _not_ready(patch, body, exc)


@kopf.on.delete(INSTALLS, field="spec.scrubOnDelete", value=True)
async def install_deleted(body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, hub_by_silo: kopf.Index,
                          logger: kopf.Logger, **_: Any) -> None:
    """Ask the silo to remove the install and wait (bounded) for its `scrubbed`; never hang forever."""
    ctx = context(memo)
    spec = SiloInstallSpec.model_validate(dict(body["spec"]))
    status = SiloInstallStatus.model_validate(dict(body.get("status") or {}))
    if status.scrubbed_at is not None:
        logger.info("silo %s confirmed the scrub", spec.silo)
        return
    since = parse_time(body["metadata"].get("deletionTimestamp")) or datetime.now(UTC)
    waited = (datetime.now(UTC) - since).total_seconds()
    if waited > duration_seconds(spec.scrub_timeout):
        kopf.warn(body, reason="ScrubTimedOut",
                  message=f"silo {spec.silo} did not confirm the scrub within {spec.scrub_timeout}; deleting anyway")
        return
    try:
        if status.phase != "Scrubbing":
            await start_scrub(ctx, ctx.installs, namespace, name, _hub_of(namespace, spec.silo, hub_by_silo))
            kopf.info(body, reason="ScrubRequested", message=f"asked silo {spec.silo} to remove the install")
    except BusNotReady as exc:
        logger.warning("scrub not sent yet: %s", exc)
    raise kopf.TemporaryError(f"waiting for silo {spec.silo} to confirm the scrub", delay=2)


@kopf.daemon(HUBS, cancellation_timeout=5.0)
async def install_bus(name: str, namespace: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                      installs_by_uid: kopf.Index, installs_by_silo: kopf.Index, **_: Any) -> None:
    """One consumer of agent reports per hub, for as long as the hub exists."""
    ctx = context(memo)
    await BusConsumer(ctx, ctx.installs, HubRef(name, namespace), installs_by_uid, installs_by_silo).run(stopped)
