"""The silo's sign of life: a boot event, and its state in the FLEET_STATE bucket, refreshed periodically.

The state goes to `fleet.state.<silo>.agent`, which the bucket's subject transform stores as key
`<silo>.agent`; key `<silo>` stays the silo's own publishers' (DESIGN.md "Silo state").
Not to `$KV.FLEET_STATE.<silo>`: a leafnode never carries `$KV.>` between JetStream domains (checked on
nats-server 2.15.1: the publish gets no answer), and js.key_value() would need $JS.API.STREAM.INFO,
which a silo may not use."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import nats.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from fleetlattice.api.bus import AGENT_STATE_ASPECT, BOOT_EVENT, event_subject, state_subject
from fleetlattice.api.messages import SiloState

log = logging.getLogger(__name__)

async def announce_boot(nc: Client, silo: str) -> None:
    """Fire and forget (a plain publish): the event is for humans and dashboards, nothing waits on it."""
    event = {"silo": silo, "event": BOOT_EVENT, "ts": datetime.now(UTC).isoformat()}
    await nc.publish(event_subject(silo, BOOT_EVENT), json.dumps(event).encode())


async def heartbeat(js: JetStreamContext, silo: str, state: Callable[[], SiloState], every: float) -> None:
    """Put the silo's state now and every `every` seconds, until cancelled. A failed put is logged
    once per outage (the bucket may not exist yet, the hub may be down) and tried again next beat."""
    failing = False
    while True:
        try:
            await js.publish(state_subject(silo, AGENT_STATE_ASPECT), state().encode())
            if failing:
                log.info("silo state stored again")
            failing = False
        except nats.errors.Error as error:
            if not failing:
                log.warning("could not store the silo state in FLEET_STATE: %s", error)
            failing = True
        await asyncio.sleep(every)
