"""SiloInstall apply layer: publish requests and scrubs on the install bus, and store every
state-machine step in status with optimistic concurrency (read, transform, PUT with resourceVersion)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from .api.messages import BusMessage
from .api.siloinstall import FINAL_PHASES, SiloInstallSpec, SiloInstallStatus
from .conditions import Cond, merge_conditions
from .install_router import REPORT_KINDS
from .install_state import dump
from .kube import Kube
from .metrics import INSTALL_SECONDS, INSTALL_TRANSITIONS
from .natsconn import HubNotReachable
from .render.names import HubRef
from .render.permissions import INSTALL_STREAM, agent_durable

if TYPE_CHECKING:
    from .context import Context

log = logging.getLogger(__name__)

OPERATOR_DURABLE = "fleet-lattice-operator"
JS_TIMEOUT = 5.0
AGENT_ACK_WAIT_SECONDS = 60.0
AGENT_MAX_DELIVER = 10
OPERATOR_ACK_WAIT_SECONDS = 30.0


class BusNotReady(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def request_subject(silo: str, verb: str) -> str:
    return f"fleet.install.{silo}.{verb}"


async def ensure_consumers(js: JetStreamContext, silo: str | None = None) -> None:
    """The operator's durable on every silo's reports and, when given, the silo agent's durable on
    its own requests and scrubs. Filters never overlap, as a work-queue stream requires."""
    try:
        await js.stream_info(INSTALL_STREAM)
    except NotFoundError as exc:
        raise BusNotReady("InstallStreamMissing",
                          f"stream {INSTALL_STREAM} does not exist on the hub; apply its FleetStream") from exc
    await js.add_consumer(INSTALL_STREAM, ConsumerConfig(
        durable_name=OPERATOR_DURABLE,
        filter_subjects=[request_subject("*", kind) for kind in REPORT_KINDS],
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=OPERATOR_ACK_WAIT_SECONDS,
        max_ack_pending=10_000,
    ))
    if silo:
        await js.add_consumer(INSTALL_STREAM, ConsumerConfig(
            durable_name=agent_durable(silo),
            filter_subjects=[request_subject(silo, "request"), request_subject(silo, "scrub")],
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=AGENT_ACK_WAIT_SECONDS,
            max_deliver=AGENT_MAX_DELIVER,
            max_ack_pending=1,
        ))


async def publish(js: JetStreamContext, subject: str, message: BusMessage, msg_id: str) -> None:
    """Stored in JetStream or raises; Nats-Msg-Id makes a retried publish a no-op."""
    await js.publish(subject, message.encode(), headers={"Nats-Msg-Id": msg_id}, stream=INSTALL_STREAM)


async def jetstream_for(ctx: Context, namespace: str, hub_name: str) -> JetStreamContext:
    try:
        nc = await ctx.hubs.get(HubRef(hub_name, namespace))
    except HubNotReachable as exc:
        raise BusNotReady("HubUnavailable", str(exc)) from exc
    return nc.jetstream(timeout=JS_TIMEOUT)


Transform = Callable[[SiloInstallStatus, SiloInstallSpec, dict[str, Any]], Awaitable[SiloInstallStatus | None]]


def _observe_transition(old: SiloInstallStatus, new: SiloInstallStatus) -> None:
    if old.phase == new.phase:
        return
    INSTALL_TRANSITIONS.labels(old.phase, new.phase).inc()
    if new.phase in FINAL_PHASES and new.started_at and new.completed_at:
        INSTALL_SECONDS.labels(new.phase).observe((new.completed_at - new.started_at).total_seconds())


class InstallStore:
    """Read-transform-write of one SiloInstall's status, serialised per install in this process and
    guarded by resourceVersion against anything else."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def update(self, namespace: str, name: str, transform: Transform,
                     conditions: Callable[[SiloInstallStatus], list[Cond]] | None = None,
                     seen: dict[str, Any] | None = None) -> SiloInstallStatus | None:
        """Returns the stored status, or None when nothing changed (no write) or the object is gone.
        `seen` is a recent copy of the object (kopf's body): when the transform changes nothing on it,
        no read is made at all, which is what keeps a timer over a thousand installs cheap."""
        async with self._locks.setdefault((namespace, name), asyncio.Lock()):
            if seen is not None and await _next_status(seen, transform, conditions) is None:
                return None
            for _ in range(5):
                body = await self.kube.get("SiloInstall", namespace, name)
                if body is None:
                    return None
                change = await _next_status(body, transform, conditions)
                if change is None:
                    return None
                status, new, body["status"] = change
                try:
                    await self.kube.replace_status(body)
                except ApiException as exc:
                    if exc.status == 409:
                        continue
                    raise
                _observe_transition(status, new)
                return new
            raise RuntimeError(f"SiloInstall {namespace}/{name}: status kept changing underneath, giving up")


async def _next_status(body: dict[str, Any], transform: Transform,
                       conditions: Callable[[SiloInstallStatus], list[Cond]] | None,
                       ) -> tuple[SiloInstallStatus, SiloInstallStatus, dict[str, Any]] | None:
    """(old status, new status, new stored status) after `transform`, or None if the stored status stays."""
    status = SiloInstallStatus.model_validate(body.get("status") or {})
    spec = SiloInstallSpec.model_validate(body["spec"])
    new = await transform(status, spec, body) or status
    old = body.get("status") or {}
    stored = dump(new)
    stored["conditions"] = merge_conditions(old.get("conditions"), conditions(new) if conditions else [],
                                            body["metadata"].get("generation"))
    return None if stored == old else (status, new, stored)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
