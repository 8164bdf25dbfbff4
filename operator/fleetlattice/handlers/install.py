"""SiloInstall handlers: indexes for routing, requests on change, scrub on delete, and per FleetHub one daemon
that consumes the agents' reports and ticks the hub's installs (deadlines, retries, heartbeats)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf

from fleetlattice.api.base import duration_seconds
from fleetlattice.api.bus import BUS_REQUEST_ANNOTATION
from fleetlattice.api.siloinstall import SiloInstallSpec, SiloInstallStatus
from fleetlattice.apply.install_consumer import ReportConsumer
from fleetlattice.clients.metrics import reconciling
from fleetlattice.handlers.common import HUBS, INSTALLS, LEAVES, indexed_copy, runtime
from fleetlattice.logic.conditions import NotReady
from fleetlattice.logic.install_state import awaits_attempt
from fleetlattice.logic.report_routing import index_entry
from fleetlattice.logic.times import seconds_since
from fleetlattice.render.names import HubRef


@kopf.index(INSTALLS)
def installs_by_uid(namespace: str, name: str, uid: str, spec: kopf.Spec, status: kopf.Status, **_: Any):
    return {uid: index_entry(namespace, name, spec, status)}


@kopf.index(INSTALLS)
def installs_by_silo(namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any):
    return {(namespace, spec.get("silo")): index_entry(namespace, name, spec, status)}


@kopf.index(INSTALLS, annotations={BUS_REQUEST_ANNOTATION: kopf.PRESENT})
def installs_by_request(namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, annotations: kopf.Annotations,
                        **_: Any):
    """SiloInstalls that record requests published by hand, by the agent's requestId for them."""
    return {annotations[BUS_REQUEST_ANNOTATION]: index_entry(namespace, name, spec, status)}


TICKED_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion", "annotations", "deletionTimestamp")


@kopf.index(INSTALLS)
def install_bodies(namespace: str, name: str, body: kopf.Body, **_: Any):
    """kopf's copy of each SiloInstall, for its hub's ticker (what a kopf timer would have been handed)."""
    return {(namespace, name): indexed_copy(body, TICKED_METADATA)}


@kopf.index(LEAVES)
def hub_by_silo(namespace: str, spec: kopf.Spec, **_: Any):
    return {(namespace, spec.get("silo")): spec.get("hub")}


def _silo_hub(namespace: str, silo: str, hub_by_silo: kopf.Index) -> str | None:
    hubs = sorted(hub_by_silo.get((namespace, silo), ()))
    return hubs[0] if hubs else None


def _hub_of(namespace: str, silo: str, hub_by_silo: kopf.Index) -> str:
    hub = _silo_hub(namespace, silo, hub_by_silo)
    if hub is None:
        raise NotReady("SiloUnknown", f"no SiloLeaf for silo {silo} in namespace {namespace}")
    return hub


def _installs_of(hub: HubRef, install_bodies: kopf.Index, hub_by_silo: kopf.Index):
    """The SiloInstalls a hub's ticker looks after: those of its namespace whose silo is on it, and those whose
    silo has no SiloLeaf at all (every hub of the namespace says so; the store writes it once)."""
    for (namespace, _name), bodies in list(install_bodies.items()):
        if namespace != hub.namespace:
            continue
        for body in bodies:
            silo_hub = _silo_hub(namespace, body["spec"].get("silo"), hub_by_silo)
            if silo_hub in (hub.name, None):
                yield body, silo_hub


@kopf.on.event(INSTALLS)
async def install_seen(type: str, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo,
                       hub_by_silo: kopf.Index, **_: Any) -> None:
    """A new spec (or a new SiloInstall) is published at once. An event handler, not kopf's create/update
    handlers: those store the handled spec in an annotation, one more API write per install that the ticker makes
    unneeded, as it publishes whatever is due (retries, and what failed here) every TICK_SECONDS."""
    rt = runtime(memo)
    if type == "DELETED":
        rt.store.forget(namespace, name)
        return
    if body["metadata"].get("deletionTimestamp") or not awaits_attempt(body):
        return
    try:
        hub = _hub_of(namespace, body["spec"]["silo"], hub_by_silo)
        async with reconciling("SiloInstall"):
            await rt.installs.advance(namespace, name, hub, dict(body))
    except NotReady as exc:
        await rt.installs.hold(namespace, name, exc, dict(body))


@kopf.on.delete(INSTALLS, field="spec.scrubOnDelete", value=True)
async def install_deleted(body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, hub_by_silo: kopf.Index,
                          logger: kopf.Logger, **_: Any) -> None:
    """Ask the silo to remove the install and wait (bounded) for its `scrubbed`; never hang forever."""
    rt = runtime(memo)
    spec = SiloInstallSpec.model_validate(dict(body["spec"]))
    status = SiloInstallStatus.model_validate(dict(body.get("status") or {}))
    if status.scrubbed_at is not None:
        logger.info("silo %s confirmed the scrub", spec.silo)
        return
    if seconds_since(body["metadata"].get("deletionTimestamp")) > duration_seconds(spec.scrub_timeout):
        kopf.warn(body, reason="ScrubTimedOut",
                  message=f"silo {spec.silo} did not confirm the scrub within {spec.scrub_timeout}; deleting anyway")
        return
    try:
        if status.phase != "Scrubbing":
            await rt.installs.start_scrub(namespace, name, _hub_of(namespace, spec.silo, hub_by_silo))
            kopf.event(body, type="Normal", reason="ScrubRequested",
                       message=f"asked silo {spec.silo} to remove the install")
    except NotReady as exc:
        logger.warning("scrub not sent yet: %s", exc)
    raise kopf.TemporaryError(f"waiting for silo {spec.silo} to confirm the scrub", delay=2)


@kopf.daemon(HUBS, cancellation_timeout=5.0)
async def install_bus(name: str, namespace: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                      installs_by_uid: kopf.Index, installs_by_silo: kopf.Index, installs_by_request: kopf.Index,
                      install_bodies: kopf.Index, hub_by_silo: kopf.Index, **_: Any) -> None:
    """Per hub, for as long as it exists: one consumer of agent reports, and one ticker of its installs
    (deadlines, retries, heartbeats)."""
    rt = runtime(memo)
    hub = HubRef(name, namespace)
    consumer = ReportConsumer(rt.connections, rt.store, rt.heartbeats, hub,
                              installs_by_uid, installs_by_silo, installs_by_request)
    ticker = asyncio.create_task(rt.installs.tick_all(hub, lambda: _installs_of(hub, install_bodies, hub_by_silo),
                                                      stopped))
    try:
        await consumer.run(stopped)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
