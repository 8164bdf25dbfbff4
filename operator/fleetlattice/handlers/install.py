"""SiloInstall handlers: indexes for routing, requests on change, a timer for deadlines and
heartbeats, scrub on delete, and one install-bus consumer daemon per FleetHub."""

from __future__ import annotations

from typing import Any

import kopf

from fleetlattice.api.base import duration_seconds
from fleetlattice.api.bus import BUS_REQUEST_ANNOTATION
from fleetlattice.api.siloinstall import SiloInstallSpec, SiloInstallStatus
from fleetlattice.apply.install_consumer import ReportConsumer
from fleetlattice.clients.metrics import reconciling
from fleetlattice.handlers.common import HUBS, INSTALLS, LEAVES, runtime
from fleetlattice.logic.conditions import NotReady
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


@kopf.index(LEAVES)
def hub_by_silo(namespace: str, spec: kopf.Spec, **_: Any):
    return {(namespace, spec.get("silo")): spec.get("hub")}


def _hub_of(namespace: str, silo: str, hub_by_silo: kopf.Index) -> str:
    hubs = sorted(hub_by_silo.get((namespace, silo), ()))
    if not hubs:
        raise NotReady("SiloUnknown", f"no SiloLeaf for silo {silo} in namespace {namespace}")
    return hubs[0]


@kopf.on.resume(INSTALLS)
@kopf.on.create(INSTALLS)
@kopf.on.update(INSTALLS, field="spec")
async def install_changed(body: kopf.Body, namespace: str, name: str, memo: kopf.Memo,
                          hub_by_silo: kopf.Index, **_: Any) -> None:
    try:
        hub = _hub_of(namespace, body["spec"]["silo"], hub_by_silo)
        async with reconciling("SiloInstall"):
            await runtime(memo).installs.advance(namespace, name, hub, dict(body))
    except NotReady as exc:
        await runtime(memo).installs.hold(namespace, name, exc, dict(body))
        raise kopf.TemporaryError(str(exc), delay=5) from exc


@kopf.timer(INSTALLS, interval=5.0, initial_delay=2.0)
async def install_tick(body: kopf.Body, namespace: str, name: str, memo: kopf.Memo,
                       hub_by_silo: kopf.Index, **_: Any) -> None:
    if body["metadata"].get("deletionTimestamp"):
        return
    try:
        hub = _hub_of(namespace, body["spec"]["silo"], hub_by_silo)
        await runtime(memo).installs.tick(namespace, name, hub, body["spec"]["silo"], dict(body))
    except NotReady as exc:
        await runtime(memo).installs.hold(namespace, name, exc, dict(body))


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


@kopf.on.event(INSTALLS)
def install_gone(type: str, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        runtime(memo).store.forget(namespace, name)


@kopf.daemon(HUBS, cancellation_timeout=5.0)
async def install_bus(name: str, namespace: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                      installs_by_uid: kopf.Index, installs_by_silo: kopf.Index, installs_by_request: kopf.Index,
                      **_: Any) -> None:
    """One consumer of agent reports per hub, for as long as the hub exists."""
    rt = runtime(memo)
    consumer = ReportConsumer(rt.connections, rt.store, rt.heartbeats, HubRef(name, namespace),
                              installs_by_uid, installs_by_silo, installs_by_request)
    await consumer.run(stopped)
