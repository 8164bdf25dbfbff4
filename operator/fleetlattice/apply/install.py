"""SiloInstall orchestration: publish attempts, watch deadlines and heartbeats, scrub on delete.
Each step: load, apply a pure transition (logic.install_state), store (InstallStore)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import nats.errors

from fleetlattice.api.bus import BUS_REQUEST_ANNOTATION, install_subject
from fleetlattice.api.siloinstall import SiloInstallSpec, SiloInstallStatus
from fleetlattice.apply.install_jetstream import delete_agent_consumer, ensure_consumers, jetstream, publish
from fleetlattice.apply.install_store import InstallStore
from fleetlattice.clients.hub_connections import HubConnections
from fleetlattice.clients.kube import Kube
from fleetlattice.logic.conditions import NotReady
from fleetlattice.logic.heartbeats import SiloHeartbeats
from fleetlattice.logic.install_state import (
    adopt,
    agent_seen,
    begin_attempt,
    begin_scrub,
    check_deadline,
    install_conditions,
    needs_new_attempt,
    request_for,
    retry_due,
    scrub_request,
)
from fleetlattice.logic.times import utcnow
from fleetlattice.render.names import HubRef

log = logging.getLogger(__name__)
# A silo's agent durable, once made, is taken to exist for this long: a publish or a leaf resync within it
# makes no JetStream call for it (at a thousand silos three calls per publish timed out on the hub's API).
# After it, the next one checks again, which re-creates a durable lost with the stream (a hub without
# persistent storage restarted).
ENLISTED_SECONDS = 300.0
# Every active install of a hub is looked at this often (deadlines, retries, AgentConnected, publishes due).
TICK_SECONDS = 5.0
# Installs looked at together in one round; the rest wait for a slot.
TICK_CONCURRENCY = 32
# JetStream API calls in flight per process for durables: a cold start of a thousand silos asking at once
# made the hub's API answer after JS_TIMEOUT.
CONSUMER_CALLS = 16


class InstallRequests:
    """Turns SiloInstall specs into requests and scrubs on the bus; the agents' answers come back
    through apply.install_consumer."""

    def __init__(self, kube: Kube, hubs: HubConnections, store: InstallStore, heartbeats: SiloHeartbeats) -> None:
        self.kube, self.hubs, self.store, self.heartbeats = kube, hubs, store, heartbeats
        # (namespace, hub, silo) -> when its agent durable was last made sure of (monotonic clock)
        self._enlisted: dict[tuple[str, str, str], float] = {}
        self._consumer_calls = asyncio.Semaphore(CONSUMER_CALLS)

    async def _ensure_agent(self, js: Any, namespace: str, hub: str, silo: str) -> None:
        """The operator's and the silo agent's durables, unless made sure of within ENLISTED_SECONDS."""
        key = (namespace, hub, silo)
        if time.monotonic() - self._enlisted.get(key, float("-inf")) < ENLISTED_SECONDS:
            return
        async with self._consumer_calls:
            await ensure_consumers(js, silo)
        self._enlisted[key] = time.monotonic()

    async def advance(self, namespace: str, name: str, hub: str,
                      seen: dict[str, Any] | None = None) -> SiloInstallStatus | None:
        """Begin a new attempt when one is due (new generation or retry): published, then stored Requested in
        one status write (InstallStore.update). With `seen` (kopf's recent copy, as the change handler and the
        ticker have it), an install with nothing due costs no API call."""
        js = await jetstream(self.hubs, HubRef(hub, namespace))

        async def reserve(status: SiloInstallStatus, spec: SiloInstallSpec, body: dict[str, Any]):
            generation = body["metadata"]["generation"]
            by_hand = (body["metadata"].get("annotations") or {}).get(BUS_REQUEST_ANNOTATION)
            if by_hand and not status.request_id:
                return adopt(status, spec, by_hand, generation, utcnow())
            if needs_new_attempt(status, generation) or retry_due(status, utcnow()):
                return begin_attempt(status, spec, body["metadata"]["uid"], generation, utcnow())
            return None

        async def publish_request(status: SiloInstallStatus, spec: SiloInstallSpec) -> None:
            await self._ensure_agent(js, namespace, hub, spec.silo)
            await publish(js, install_subject(spec.silo, "request"), request_for(status, spec), status.request_id)
            log.info("published %s for %s/%s", status.request_id, namespace, name)

        return await self.store.update(namespace, name, reserve, lambda s: install_conditions(s, None, None), seen,
                                       publish=publish_request)

    async def tick(self, namespace: str, name: str, hub: str, silo: str, seen: dict[str, Any]) -> None:
        """Deadlines, retries and the AgentConnected condition; then publish whatever became due. `seen` is
        kopf's copy of the object: the API is only read when it shows something to do. The hub's reachability
        is known before the one status write, so an outage is written once (see install_conditions)."""
        age = self.heartbeats.age(namespace, silo)
        blocked: NotReady | None = None
        try:
            await jetstream(self.hubs, HubRef(hub, namespace))
        except NotReady as exc:
            blocked = exc

        async def deadline(status: SiloInstallStatus, spec: SiloInstallSpec, _body: dict[str, Any]):
            return check_deadline(status, spec, utcnow())

        await self.store.update(namespace, name, deadline,
                                lambda s: install_conditions(s, agent_seen(age, s, utcnow()), age, blocked), seen)
        if blocked is None:
            await self.advance(namespace, name, hub, seen)

    async def tick_all(self, hub: HubRef, due: Callable[[], Iterable[tuple[dict[str, Any], str | None]]],
                       stopped: Any) -> None:
        """Tick every SiloInstall of one hub every TICK_SECONDS until `stopped` (kopf's daemon flag). One loop per
        hub, not a kopf timer per install: kopf puts a finalizer on every object with a timer, and at a thousand
        installs adding it collided with the first status writes (three refused patches per install) and kept a
        task per install. `due()` gives kopf's copy of each install with its silo's hub (None: no SiloLeaf)."""
        slots = asyncio.Semaphore(TICK_CONCURRENCY)

        async def one(body: dict[str, Any], silo_hub: str | None) -> None:
            meta = body["metadata"]
            async with slots:
                try:
                    if silo_hub is None:
                        raise NotReady("SiloUnknown", f"no SiloLeaf for silo {body['spec'].get('silo')} in namespace "
                                                      f"{meta['namespace']}")
                    await self.tick(meta["namespace"], meta["name"], silo_hub, body["spec"]["silo"], body)
                except NotReady as exc:
                    await self.hold(meta["namespace"], meta["name"], exc, body)
                except Exception as exc:  # one install's trouble must not stop the others' ticks
                    log.warning("SiloInstall %s/%s: tick failed: %s", meta["namespace"], meta["name"], exc)

        while not stopped:
            started = time.monotonic()
            await asyncio.gather(*(one(body, silo_hub) for body, silo_hub in due()
                                   if not body["metadata"].get("deletionTimestamp")))
            await stopped.wait(max(0.0, TICK_SECONDS - (time.monotonic() - started)))

    async def enlist_silo(self, namespace: str, hub: str, silo: str) -> None:
        """The silo agent's durable as soon as the silo has its SiloLeaf, not only with its first SiloInstall:
        a request published by hand (the seeds' `nats pub fleet.install.<silo>.request`) must reach the agent
        on a fleet where nobody has applied a SiloInstall. Once per silo and ENLISTED_SECONDS (at a thousand
        silos the leaves' resyncs would otherwise cost 100 JetStream calls a second); a hub or FLEET_INSTALL
        not there yet is retried at the leaf's next resync."""
        try:
            await self._ensure_agent(await jetstream(self.hubs, HubRef(hub, namespace)), namespace, hub, silo)
        except (NotReady, nats.errors.Error) as exc:
            log.info("agent consumer of silo %s not created yet: %s", silo, exc)

    async def retire_silo(self, namespace: str, hub: str, silo: str) -> None:
        """The silo's last SiloLeaf is gone: delete its agent's durable, so a fleet that churns silos does not
        collect consumers on the hub. A hub that cannot be reached keeps it (and says so in the log)."""
        try:
            await delete_agent_consumer(await jetstream(self.hubs, HubRef(hub, namespace)), silo)
        except (NotReady, nats.errors.Error) as exc:
            log.warning("agent consumer of silo %s not deleted: %s", silo, exc)
        self._enlisted.pop((namespace, hub, silo), None)
        self.heartbeats.forget(namespace, silo)

    async def hold(self, namespace: str, name: str, reason: NotReady, seen: dict[str, Any] | None = None) -> None:
        """Record why the install cannot move on, through the store like every other status change."""

        async def unchanged(_status: SiloInstallStatus, _spec: SiloInstallSpec, _body: dict[str, Any]):
            return None

        await self.store.update(namespace, name, unchanged, lambda s: install_conditions(s, None, None, reason), seen)

    async def start_scrub(self, namespace: str, name: str, hub: str) -> SiloInstallStatus:
        """Phase Scrubbing and a scrub message, once; the caller waits for `scrubbedAt`."""
        js = await jetstream(self.hubs, HubRef(hub, namespace))

        async def scrubbing(status: SiloInstallStatus, _spec: SiloInstallSpec, body: dict[str, Any]):
            if status.phase == "Scrubbing":
                return None
            return begin_scrub(status, body["metadata"]["uid"], utcnow())

        await self.store.update(namespace, name, scrubbing)
        body = await self.kube.get("SiloInstall", namespace, name)
        if body is None:
            raise NotReady("Gone", f"SiloInstall {namespace}/{name} no longer exists")
        status = SiloInstallStatus.model_validate(body.get("status") or {})
        spec = SiloInstallSpec.model_validate(body["spec"])
        message = scrub_request(status)
        await self._ensure_agent(js, namespace, hub, spec.silo)
        # Same requestId as Nats-Msg-Id each time: a repeated scrub publish is dropped by JetStream.
        await publish(js, install_subject(spec.silo, "scrub"), message, message.request_id)
        return status
