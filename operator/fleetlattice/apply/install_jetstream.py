"""The JetStream side of the install bus: the durable consumers on FLEET_INSTALL and deduplicated
publishes of requests and scrubs."""

from __future__ import annotations

import contextlib

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from fleetlattice.api.bus import (
    INSTALL_STREAM,
    MSG_ID_HEADER,
    OPERATOR_DURABLE,
    REPORT_KINDS,
    REQUEST_KINDS,
    agent_durable,
    install_subject,
)
from fleetlattice.api.messages import BusMessage
from fleetlattice.clients.hub_connections import HubConnections, HubNotReachable
from fleetlattice.logic.conditions import NotReady
from fleetlattice.render.names import HubRef

JS_TIMEOUT = 5.0
AGENT_ACK_WAIT_SECONDS = 60.0
AGENT_MAX_DELIVER = 10
OPERATOR_ACK_WAIT_SECONDS = 30.0
# With doubling nak delays capped at a minute (install_consumer.redelivery_delay), about 45 minutes of
# failing status writes before JetStream gives a report up (and says so in an advisory).
OPERATOR_MAX_DELIVER = 50
OPERATOR_MAX_ACK_PENDING = 10_000


async def ensure_consumers(js: JetStreamContext, silo: str | None = None) -> None:
    """The operator's durable on every silo's reports and, when given, the silo agent's durable on
    its own requests and scrubs. Filters never overlap, as a work-queue stream requires."""
    try:
        await js.stream_info(INSTALL_STREAM)
    except NotFoundError as exc:
        raise NotReady("InstallStreamMissing",
                       f"stream {INSTALL_STREAM} does not exist on the hub; apply its FleetStream") from exc
    await js.add_consumer(INSTALL_STREAM, ConsumerConfig(
        durable_name=OPERATOR_DURABLE,
        filter_subjects=[install_subject("*", kind) for kind in REPORT_KINDS],
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=OPERATOR_ACK_WAIT_SECONDS,
        max_deliver=OPERATOR_MAX_DELIVER,
        max_ack_pending=OPERATOR_MAX_ACK_PENDING,
    ))
    if silo:
        await js.add_consumer(INSTALL_STREAM, ConsumerConfig(
            durable_name=agent_durable(silo),
            filter_subjects=[install_subject(silo, kind) for kind in REQUEST_KINDS],
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=AGENT_ACK_WAIT_SECONDS,
            max_deliver=AGENT_MAX_DELIVER,
            max_ack_pending=1,
        ))


async def delete_agent_consumer(js: JetStreamContext, silo: str) -> None:
    """The silo is gone: its agent's durable goes too (durables are never deleted by the server)."""
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(INSTALL_STREAM, agent_durable(silo))


async def publish(js: JetStreamContext, subject: str, message: BusMessage, msg_id: str) -> None:
    """Stored in JetStream or raises; Nats-Msg-Id makes a retried publish a no-op."""
    await js.publish(subject, message.encode(), headers={MSG_ID_HEADER: msg_id}, stream=INSTALL_STREAM)


async def connection(hubs: HubConnections, hub: HubRef) -> NATS:
    try:
        return await hubs.get(hub)
    except HubNotReachable as exc:
        raise NotReady("HubUnavailable", str(exc)) from exc


async def jetstream(hubs: HubConnections, hub: HubRef) -> JetStreamContext:
    return (await connection(hubs, hub)).jetstream(timeout=JS_TIMEOUT)
