"""The operator's consumer of agent reports on one hub: reports in, SiloInstall status out, and the
FLEET_STATE watch that keeps the agents' heartbeats in memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from nats.js.errors import NotFoundError

from fleetlattice.api.bus import (
    AGENT_STATE_ASPECT,
    BUS_REQUEST_PREFIX,
    INSTALL_STREAM,
    OPERATOR_DURABLE,
    STATE_BUCKET,
    install_subject,
)
from fleetlattice.api.messages import MAX_MESSAGE_BYTES, AcceptedRequest, SiloState
from fleetlattice.api.siloinstall import SiloInstallSpec, SiloInstallStatus
from fleetlattice.apply.install_jetstream import (
    JS_TIMEOUT,
    OPERATOR_MAX_DELIVER,
    connection,
    ensure_consumers,
    jetstream,
)
from fleetlattice.apply.install_store import InstallStore
from fleetlattice.clients.hub_connections import HubConnections
from fleetlattice.clients.metrics import BUS_MESSAGES
from fleetlattice.logic.heartbeats import SiloHeartbeats
from fleetlattice.logic.install_state import adopt, agent_seen, apply_report, install_conditions
from fleetlattice.logic.report_routing import InstallKey, Route, by_hand_install, route
from fleetlattice.logic.times import utcnow
from fleetlattice.render.names import HubRef

log = logging.getLogger(__name__)
# Reports taken at once. An install's reports lie far apart in a backlog (a thousand agents report at once), and
# only those in one batch share a status write: at 256, a 1,000-silo cold start wrote each report on its own.
# Bounded by what a batch must finish within (OPERATOR_ACK_WAIT_SECONDS, at about 50 status writes a second on
# a loaded 2-core API server) and by memory (512 x the 64 KiB largest report = 32 MiB).
FETCH_BATCH = 512
# Progress reports wait for their install's next reports until none came for this long (and at most
# REPORT_HOLD_MAX_SECONDS), so that a burst of them (an agent's steps that take no time, a backlog after a restart)
# is one status write, not one each: at a 1,000-silo cold start, 4.9 writes per install (audit log). A quiet second:
# an agent's reports come a few hundred ms apart on a loaded hub (0.3 s p50 per JetStream publish at 1,000 agents),
# and a step shown a second late is no loss next to steps that take minutes. A final report (done, failed,
# scrubbed) is written at once, with whatever waits: its latency is what users watch.
REPORT_HOLD_SECONDS = 1.0
# While the consumer is behind (the stream holds reports it has not fetched), a quiet second says nothing: an
# install's reports lie a thousand messages apart in a cold start's backlog and reached the consumer 8-9 s apart
# although the agent sent them within a second (3.4 writes per install at 1,000 silos). So progress is held until
# the consumer has caught up too, within this cap (well inside the 30 s ack wait).
REPORT_HOLD_MAX_SECONDS = 10.0
# Bytes of reports taken and not yet settled (held or being written): the fetch loop waits above this, so a slow
# API server holds up fetching, not memory. In bytes, not reports: at a cold start every install has a write on
# its way and its next reports waiting for it, and a bound of 1,024 reports held the backlog in the stream, so
# each write took one report (4.8 writes per install at 1,000 silos). A fetch's worth of the largest reports.
MAX_UNSETTLED_BYTES = FETCH_BATCH * MAX_MESSAGE_BYTES
# A report of a request published by hand waits this long for the SiloInstall recording it to be indexed.
RECORD_WAIT_SECONDS = 1.0
RECORD_MEMORY_SECONDS = 300.0
MAX_DELIVERIES_ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{INSTALL_STREAM}.{OPERATOR_DURABLE}"
# API answers that no retry can change: the write itself is refused (invalid, too large, forbidden).
PERMANENT_API_STATUSES = frozenset({400, 403, 413, 422})


def is_permanent(exc: Exception) -> bool:
    return isinstance(exc, ApiException) and exc.status in PERMANENT_API_STATUSES


def _pending_after(msg: Any) -> int:
    """How many messages the consumer had yet to deliver after this one (0 when unknown)."""
    return getattr(getattr(msg, "metadata", None), "num_pending", 0) or 0


def redelivery_delay(msg: Any) -> float:
    """Doubling with each delivery, capped: an API server down for minutes is waited out well within
    OPERATOR_MAX_DELIVER deliveries, without a redelivery storm."""
    delivered = getattr(getattr(msg, "metadata", None), "num_delivered", 1) or 1
    return float(min(2 ** delivered, 60))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _unsubscribe(sub: Any) -> None:
    with contextlib.suppress(Exception):  # the connection may already be gone
        await sub.unsubscribe()


@dataclass
class HeldReports:
    """An install's reports waiting for its next status write. `after`: the write of the install's previous
    reports, if still running; `behind`: whether the consumer has reports in the stream it has not fetched yet;
    `final`: a final report is among them; `stirred`: set by each report added."""

    silo: str
    after: asyncio.Task[None] | None
    behind: Callable[[], bool]
    items: list[tuple[Any, str, Any]] = field(default_factory=list)
    final: bool = False
    stirred: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, msg: Any, kind: str, payload: Any) -> None:
        self.items.append((msg, kind, payload))
        self.final = self.final or kind != "progress"
        self.stirred.set()

    async def quiet(self) -> None:
        """Returns when a final report is in, or no report came for REPORT_HOLD_SECONDS and the consumer is not
        behind (REPORT_HOLD_MAX_SECONDS at most)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPORT_HOLD_MAX_SECONDS
        while not self.final:
            self.stirred.clear()
            left = min(REPORT_HOLD_SECONDS, deadline - loop.time())
            try:
                await asyncio.wait_for(self.stirred.wait(), max(left, 0.0))
            except TimeoutError:
                if not self.behind() or loop.time() >= deadline:
                    return


class ReportConsumer:
    """Drains the operator's durable consumer of one hub. An install's reports are held until they stop coming
    (HeldReports) and applied together in one status write, one write of an install at a time; every message is
    acked only after its effect is stored: a crash before the write means JetStream redelivers it."""

    def __init__(self, hubs: HubConnections, store: InstallStore, heartbeats: SiloHeartbeats, hub: HubRef,
                 by_uid: Mapping[str, Any], by_silo: Mapping[Any, Any], by_request: Mapping[str, Any]) -> None:
        self.hubs, self.store, self.heartbeats, self.hub = hubs, store, heartbeats, hub
        self.by_uid, self.by_silo, self.by_request = by_uid, by_silo, by_request
        # requestId -> when this process recorded it as a SiloInstall: its later reports wait for the index.
        self._recorded: dict[str, float] = {}
        self._held: dict[InstallKey, HeldReports] = {}
        self._writes: dict[InstallKey, asyncio.Task[None]] = {}  # each install's latest write of held reports
        self._unsettled = 0  # bytes
        self._settled = asyncio.Event()
        self._behind = False  # the last fetch left reports in the stream

    async def run(self, stopped: Any) -> None:
        """`stopped` is kopf's daemon flag: truthy once stopping, with an awaitable wait(timeout). Everything
        one round subscribes (the pull subscription, the advisory subscription) is stopped before the next
        round replaces it; the heartbeat watch lives across rounds, as each one costs a consumer on the hub."""
        watcher = asyncio.create_task(self._watch_heartbeats())
        try:
            await self._consume(stopped)
        finally:
            await _cancel(watcher)
            # Not acked, so JetStream redelivers them to whoever consumes next.
            for task in list(self._writes.values()):
                await _cancel(task)

    async def _consume(self, stopped: Any) -> None:
        while not stopped:
            async with contextlib.AsyncExitStack() as round_:
                try:
                    nc = await connection(self.hubs, self.hub)
                    js = nc.jetstream(timeout=JS_TIMEOUT)
                    await ensure_consumers(js)
                    advisories = await nc.subscribe(MAX_DELIVERIES_ADVISORY, cb=self._on_max_deliveries)
                    round_.push_async_callback(_unsubscribe, advisories)
                    sub = await js.pull_subscribe_bind(OPERATOR_DURABLE, INSTALL_STREAM)
                    round_.push_async_callback(_unsubscribe, sub)
                    while not stopped:
                        try:
                            msgs = await sub.fetch(FETCH_BATCH, timeout=2)
                        except TimeoutError:
                            self._behind = False
                            continue
                        await self.process(msgs)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the bus must outlive any single failure; it retries after a pause
                    log.warning("install bus of hub %s: %s; retrying", self.hub, exc)
                    await stopped.wait(3)

    async def _on_max_deliveries(self, msg: Any) -> None:
        """JetStream gave up on a report after OPERATOR_MAX_DELIVER tries: counted and logged, never silent."""
        BUS_MESSAGES.labels("unknown", "max-deliveries").inc()
        log.warning("install bus of hub %s: a report was redelivered %d times and dropped: %s", self.hub,
                    OPERATOR_MAX_DELIVER, msg.data[:512])

    async def _watch_heartbeats(self) -> None:
        """Agents' states arrive pushed, so status reads them from memory, not once per object per tick."""
        while True:
            watcher = None
            try:
                kv = await (await jetstream(self.hubs, self.hub)).key_value(STATE_BUCKET)
                watcher = await kv.watchall()
                async for entry in watcher:
                    if entry is None or entry.value is None:
                        continue
                    silo, _, aspect = entry.key.partition(".")
                    if aspect != AGENT_STATE_ASPECT:
                        continue  # the silo's own state (pods, health, gpu, ...), not its agent's heartbeat
                    with contextlib.suppress(ValueError):
                        state = SiloState.model_validate_json(entry.value)
                        self.heartbeats.record(self.hub.namespace, silo, state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bucket not there yet, hub restarting: look again shortly
                log.debug("FLEET_STATE watch on %s: %s", self.hub, exc)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
            await asyncio.sleep(5)  # back-off before re-watching

    async def process(self, msgs: list[Any]) -> None:
        """Settle what needs no status write now; hold the rest for their install's next write (see
        REPORT_HOLD_SECONDS), which acks them once it is stored."""
        self._behind = bool(msgs) and _pending_after(msgs[-1]) > 0
        for msg in msgs:
            route_ = route(msg.subject, msg.data, self.hub.namespace, self.by_uid, self.by_silo, self.by_request)
            if route_.install is None or route_.outcome == "adopt":
                await self._settle(msg, route_)
                continue
            while self._unsettled > MAX_UNSETTLED_BYTES:
                self._settled.clear()
                await self._settled.wait()
            self._unsettled += len(msg.data)
            key = route_.install
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = HeldReports(route_.silo, self._writes.get(key), lambda: self._behind)
                task = self._writes[key] = asyncio.create_task(self._write_held(key, held))
                task.add_done_callback(lambda done, key=key: self._written(key, done))
            held.add(msg, route_.kind, route_.payload)

    def _written(self, key: InstallKey, task: asyncio.Task[None]) -> None:
        if self._writes.get(key) is task:  # not followed by a newer one
            del self._writes[key]

    async def _write_held(self, key: InstallKey, held: HeldReports) -> None:
        # While the install's previous write (or the store's write of a new attempt) is on its way, which takes
        # seconds on a loaded API server, its next reports keep joining this one write; and from when it could be
        # written, the hold (the first report of an attempt comes while the attempt's own write is on its way).
        if held.after is not None:
            await asyncio.wait([held.after])
        await self.store.idle(key.namespace, key.name)
        await held.quiet()
        # Reports from here on wait for the next write; the store's lock keeps the writes in this order.
        del self._held[key]
        try:
            await self._apply(key, held.silo, held.items)
        except Exception as exc:  # an ack or nak that did not go out (the connection went): JetStream redelivers
            log.warning("install bus of hub %s: reports of %s/%s not settled: %s", self.hub, key.namespace, key.name,
                        exc)
        finally:
            self._unsettled -= sum(len(msg.data) for msg, _kind, _payload in held.items)
            self._settled.set()

    async def _settle(self, msg: Any, r: Route) -> None:
        """A report with no install to write to: recorded (a request published by hand), waited for, or counted."""
        if r.outcome == "adopt":
            await self._record_by_hand(msg, r)
        elif self._awaits_record(msg.data):
            await msg.nak(delay=RECORD_WAIT_SECONDS)  # its SiloInstall is being made
        else:
            self._count(r.kind, r.outcome, msg.subject, r.detail)
            await msg.ack()

    async def _apply(self, key: InstallKey, silo: str, items: list[tuple[Any, str, Any]]) -> None:
        outcomes: list[tuple[str, str, str]] = []

        async def transition(status: SiloInstallStatus, spec: SiloInstallSpec, _body: dict[str, Any]):
            outcomes.clear()
            current = status
            for _msg, kind, payload in items:
                result = apply_report(current, spec, kind, payload, utcnow())
                outcomes.append((kind, result.outcome, result.detail))
                current = result.status or current
            return current

        # The agent's liveness goes into the same write (as the ticker would compute it): otherwise the hub's next
        # tick wrote AgentConnected on its own, one more status write per install at a cold start.
        age = self.heartbeats.age(key.namespace, silo)
        try:
            await self.store.update(key.namespace, key.name, transition,
                                    lambda s: install_conditions(s, agent_seen(age, s, utcnow()), age))
        except Exception as exc:
            if not is_permanent(exc):
                log.warning("SiloInstall %s/%s: status not stored (%s); reports will be redelivered",
                            key.namespace, key.name, exc)
                for msg, _kind, _payload in items:
                    await msg.nak(delay=redelivery_delay(msg))
                return
            if len(items) > 1:
                # One report the API server refuses must not take the good ones of its batch with it.
                for item in items:
                    await self._apply(key, silo, [item])
                return
            msg, kind, _payload = items[0]
            self._count(kind, "rejected", msg.subject, f"status write refused for good: {exc}")
            await msg.term()
            return
        if len(outcomes) != len(items):  # the install was deleted in between
            outcomes[:] = [(kind, "unknown-request", "install deleted") for _m, kind, _p in items]
        for (msg, _kind, _payload), (kind, outcome, detail) in zip(items, outcomes, strict=True):
            self._count(kind, outcome, msg.subject, detail)
            if outcome == "early":  # applied once its attempt is stored (InstallRequests.advance)
                await msg.nak(delay=redelivery_delay(msg))
            else:
                await msg.ack()

    async def _record_by_hand(self, msg: Any, r: Route) -> None:
        """The agent accepted a request published by hand: record it as a SiloInstall and apply this first
        report to it in the same step, so the record starts with what was accepted whatever order the
        later reports (waiting for the SiloInstall to be indexed) come back in."""
        silo = r.silo
        rid = r.payload["requestId"]
        try:
            manifest = by_hand_install(self.hub.namespace, silo, rid, AcceptedRequest.model_validate(
                r.payload["request"]))
        except ValueError as exc:
            self._count(r.kind, "ignored-invalid", msg.subject, f"request {rid} by hand cannot be recorded: {exc}")
            await msg.term()
            return
        name = manifest["metadata"]["name"]
        try:
            asked = await self._published_by_hand(silo, rid)
        except Exception as exc:  # the hub is not reachable: JetStream redelivers the report
            log.warning("request %s by hand not checked yet: %s", rid, exc)
            await msg.nak(delay=redelivery_delay(msg))
            return
        if not asked:
            # Only the hub side can publish requests; a silo claiming one that is not on the bus is refused,
            # or any silo could fill the namespace with SiloInstalls.
            self._count(r.kind, "ignored-invalid", msg.subject, f"no request {rid} published by hand for {silo}")
            await msg.term()
            return

        async def accepted(status: SiloInstallStatus, spec: SiloInstallSpec, body: dict[str, Any]):
            if not status.request_id:
                status = adopt(status, spec, rid, body["metadata"]["generation"], utcnow())
            return apply_report(status, spec, r.kind, r.payload, utcnow()).status or status

        try:
            await self.store.kube.apply(manifest)
            await self.store.update(self.hub.namespace, name, accepted, lambda s: install_conditions(s, None, None))
        except Exception as exc:  # the API server is down or refuses: JetStream redelivers the report
            log.warning("SiloInstall for %s not recorded yet: %s", rid, exc)
            await msg.nak(delay=redelivery_delay(msg))
            return
        self._recorded = {k: t for k, t in self._recorded.items() if time.monotonic() - t < RECORD_MEMORY_SECONDS}
        self._recorded[rid] = time.monotonic()
        log.info("recorded request %s published by hand as SiloInstall %s/%s", rid, self.hub.namespace, name)
        self._count(r.kind, "applied", msg.subject, "")
        await msg.ack()

    async def _published_by_hand(self, silo: str, rid: str) -> bool:
        """Whether `rid` names a request without requestId for `silo` that is on FLEET_INSTALL: the agent acks
        it only once its final report is stored, so while its `accepted` report is handled it is still there."""
        sequence = rid.removeprefix(BUS_REQUEST_PREFIX)
        if not sequence.isdigit():
            return False
        try:
            stored = await (await jetstream(self.hubs, self.hub)).get_msg(INSTALL_STREAM, int(sequence))
        except NotFoundError:
            return False
        if stored.subject != install_subject(silo, "request"):
            return False
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            return "requestId" not in json.loads(stored.data or b"")
        return False

    def _awaits_record(self, data: bytes) -> bool:
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            return json.loads(data).get("requestId") in self._recorded
        return False

    def _count(self, kind: str, outcome: str, subject: str, detail: str) -> None:
        BUS_MESSAGES.labels(kind, outcome).inc()
        if outcome != "applied":
            log.info("install bus: %s report on %s %s: %s", kind, subject, outcome, detail)
