"""SiloInstall orchestration: publish attempts, watch deadlines and heartbeats, scrub on delete,
and turn the agents' reports into status. Each step: load, apply a pure transition, store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from .api.messages import SiloState
from .api.siloinstall import SiloInstallSpec, SiloInstallStatus
from .context import Context
from .install_bus import (
    OPERATOR_DURABLE,
    BusNotReady,
    InstallStore,
    ensure_consumers,
    jetstream_for,
    publish,
    request_subject,
    utcnow,
)
from .install_router import IndexedInstall, InstallKey, route
from .install_state import (
    HEARTBEAT_FRESH_SECONDS,
    apply_report,
    begin_attempt,
    begin_scrub,
    check_deadline,
    install_conditions,
    mark_published,
    needs_new_attempt,
    request_for,
    retry_due,
    scrub_request,
    unpublished,
)
from .metrics import BUS_MESSAGES
from .render.names import HubRef
from .render.permissions import INSTALL_STREAM, STATE_BUCKET

log = logging.getLogger(__name__)
FETCH_BATCH = 256


async def advance(ctx: Context, store: InstallStore, namespace: str, name: str, hub: str,
                  seen: dict[str, Any] | None = None) -> SiloInstallStatus | None:
    """Reserve a new attempt when one is due (new generation or retry), then publish it. With `seen`
    (a recent copy, as for the timer), an install with nothing due costs no API call."""
    js = await jetstream_for(ctx, namespace, hub)

    async def reserve(status: SiloInstallStatus, spec: SiloInstallSpec, body: dict[str, Any]):
        generation = body["metadata"]["generation"]
        if needs_new_attempt(status, generation) or retry_due(status, utcnow()):
            return begin_attempt(status, spec, body["metadata"]["uid"], generation, utcnow())
        return None

    stored = await store.update(namespace, name, reserve, lambda s: install_conditions(s, None, None), seen)
    if stored is None and seen is not None and not unpublished(SiloInstallStatus.model_validate(
            seen.get("status") or {})):
        return None
    body = await ctx.kube.get("SiloInstall", namespace, name)
    if body is None:
        return None
    status = SiloInstallStatus.model_validate(body.get("status") or {})
    if not unpublished(status):
        return stored
    spec = SiloInstallSpec.model_validate(body["spec"])
    await ensure_consumers(js, spec.silo)
    await publish(js, request_subject(spec.silo, "request"), request_for(status, spec), status.request_id)
    log.info("published %s for %s/%s", status.request_id, namespace, name)

    async def published(current: SiloInstallStatus, _spec: SiloInstallSpec, _body: dict[str, Any]):
        return mark_published(current, status.request_id)

    return await store.update(namespace, name, published, lambda s: install_conditions(s, None, None))


async def tick(ctx: Context, store: InstallStore, namespace: str, name: str, hub: str, silo: str,
               seen: dict[str, Any]) -> None:
    """Deadlines, retries and the AgentConnected condition; then publish whatever became due. `seen` is
    kopf's copy of the object: the API is only read when it shows something to do."""
    age = ctx.heartbeat_age(namespace, silo)
    fresh = age is not None and age < HEARTBEAT_FRESH_SECONDS

    async def deadline(status: SiloInstallStatus, spec: SiloInstallSpec, _body: dict[str, Any]):
        return check_deadline(status, spec, utcnow())

    await store.update(namespace, name, deadline, lambda s: install_conditions(s, fresh, age), seen)
    await advance(ctx, store, namespace, name, hub, seen)


async def start_scrub(ctx: Context, store: InstallStore, namespace: str, name: str, hub: str) -> SiloInstallStatus:
    """Phase Scrubbing and a scrub message, once; the caller waits for `scrubbedAt`."""
    js = await jetstream_for(ctx, namespace, hub)

    async def scrubbing(status: SiloInstallStatus, _spec: SiloInstallSpec, body: dict[str, Any]):
        if status.phase == "Scrubbing":
            return None
        return begin_scrub(status, body["metadata"]["uid"], utcnow())

    await store.update(namespace, name, scrubbing)
    body = await ctx.kube.get("SiloInstall", namespace, name)
    if body is None:
        raise BusNotReady("Gone", f"SiloInstall {namespace}/{name} no longer exists")
    status = SiloInstallStatus.model_validate(body.get("status") or {})
    spec = SiloInstallSpec.model_validate(body["spec"])
    message = scrub_request(status)
    await ensure_consumers(js, spec.silo)
    # Same requestId as Nats-Msg-Id each time: a repeated scrub publish is dropped by JetStream.
    await publish(js, request_subject(spec.silo, "scrub"), message, message.request_id)
    return status


def index_entry(namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> IndexedInstall:
    return IndexedInstall(InstallKey(namespace, name), str(spec.get("silo", "")), str(status.get("phase", "Pending")),
                          str(status.get("requestedAt", "")))


class BusConsumer:
    """Drains the operator's durable consumer of one hub. Reports for one install in a batch are
    applied together (one status write), and every message is acked only after its effect is stored:
    a crash before the write means JetStream redelivers it."""

    def __init__(self, ctx: Context, store: InstallStore, hub: HubRef,
                 by_uid: Mapping[str, Any], by_silo: Mapping[Any, Any]) -> None:
        self.ctx, self.store, self.hub = ctx, store, hub
        self.by_uid, self.by_silo = by_uid, by_silo

    async def run(self, stopped: Any) -> None:
        """`stopped` is kopf's daemon flag: truthy once stopping, with an awaitable wait(timeout)."""
        while not stopped:
            watcher: asyncio.Task[None] | None = None
            try:
                js = await jetstream_for(self.ctx, self.hub.namespace, self.hub.name)
                watcher = asyncio.create_task(self._watch_heartbeats(js))
                await ensure_consumers(js)
                sub = await js.pull_subscribe_bind(OPERATOR_DURABLE, INSTALL_STREAM)
                while not stopped:
                    try:
                        msgs = await sub.fetch(FETCH_BATCH, timeout=2)
                    except TimeoutError:
                        continue
                    await self.process(msgs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus must outlive any single failure; it retries after a pause
                log.warning("install bus of hub %s: %s; retrying", self.hub, exc)
                await stopped.wait(3)
            finally:
                if watcher:
                    watcher.cancel()

    async def _watch_heartbeats(self, js: Any) -> None:
        """Agents' states arrive pushed, so status reads them from memory, not once per object per tick."""
        while True:
            try:
                kv = await js.key_value(STATE_BUCKET)
                async for entry in await kv.watchall():
                    if entry is None or entry.value is None or "." in entry.key:
                        continue
                    with contextlib.suppress(ValueError):
                        state = SiloState.model_validate_json(entry.value)
                        self.ctx.heartbeats[(self.hub.namespace, entry.key)] = state
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bucket not there yet, hub restarting: look again shortly
                log.debug("FLEET_STATE watch on %s: %s", self.hub, exc)
            await asyncio.sleep(5)  # back-off before re-watching

    async def process(self, msgs: list[Any]) -> None:
        grouped: dict[InstallKey, list[tuple[Any, str, Any]]] = {}
        for msg in msgs:
            r = route(msg.subject, msg.data, self.hub.namespace, self.by_uid, self.by_silo)
            if r.install is None:
                self._count(r.kind, r.outcome, msg.subject, r.detail)
                await msg.ack()
                continue
            grouped.setdefault(r.install, []).append((msg, r.kind, r.payload))
        await asyncio.gather(*(self._apply(key, items) for key, items in grouped.items()))

    async def _apply(self, key: InstallKey, items: list[tuple[Any, str, Any]]) -> None:
        outcomes: list[tuple[str, str, str]] = []

        async def transition(status: SiloInstallStatus, spec: SiloInstallSpec, _body: dict[str, Any]):
            outcomes.clear()
            current = status
            for _msg, kind, payload in items:
                result = apply_report(current, spec, kind, payload, utcnow())
                outcomes.append((kind, result.outcome, result.detail))
                current = result.status or current
            return current

        try:
            await self.store.update(key.namespace, key.name, transition, lambda s: install_conditions(s, None, None))
        except Exception as exc:
            log.warning("SiloInstall %s/%s: status not stored (%s); reports will be redelivered",
                        key.namespace, key.name, exc)
            for msg, _kind, _payload in items:
                await msg.nak(delay=2)
            return
        if len(outcomes) != len(items):  # the install was deleted in between
            outcomes[:] = [(kind, "unknown-request", "install deleted") for _m, kind, _p in items]
        for (msg, _kind, _payload), (kind, outcome, detail) in zip(items, outcomes, strict=True):
            self._count(kind, outcome, msg.subject, detail)
            await msg.ack()

    def _count(self, kind: str, outcome: str, subject: str, detail: str) -> None:
        BUS_MESSAGES.labels(kind, outcome).inc()
        if outcome != "applied":
            log.info("install bus: %s report on %s %s: %s", kind, subject, outcome, detail)
