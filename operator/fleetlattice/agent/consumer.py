"""The agent's side of its pull consumer on FLEET_INSTALL: wait for it, fetch from it, keep a message
in progress. The operator creates the consumer; the silo's credential could not, and the agent only
uses the JetStream API subjects of this one consumer (INFO, MSG.NEXT, and acks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from fleetlattice.api.bus import INSTALL_STREAM, agent_durable

log = logging.getLogger(__name__)

# A fetch is one request to the consumer; its expiry bounds how long a stopped agent waits to notice.
FETCH_SECONDS = 5.0
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# What nats-server applies when a consumer's config leaves ack_wait unset.
SERVER_DEFAULT_ACK_WAIT_SECONDS = 30.0
# Errors meaning "not there yet": no stream or consumer (404), no hub behind the leaf (503), no reply.
_NOT_YET = (nats.js.errors.NotFoundError, nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError,
            nats.errors.NoRespondersError)  # fmt: skip


class Backoff:
    """Doubling waits, capped: retry soon after a blip, without hammering a hub that is down."""

    def __init__(self) -> None:
        self.next = BACKOFF_FIRST_SECONDS

    async def wait(self) -> None:
        await asyncio.sleep(self.next)
        self.next = min(self.next * 2, BACKOFF_MAX_SECONDS)


async def bind(js: JetStreamContext, silo: str) -> tuple[JetStreamContext.PullSubscription, float]:
    """Wait until the operator has created the silo's consumer, then bind to it; returns the
    subscription and the consumer's ack_wait in seconds."""
    durable = agent_durable(silo)
    backoff = Backoff()
    logged = False
    while True:
        try:
            info = await js.consumer_info(INSTALL_STREAM, durable)
            break
        except _NOT_YET as error:
            # Normal while the hub, the stream or the SiloLeaf is still being set up: say it once.
            if not logged:
                log.warning("waiting for consumer %s on stream %s (%s)", durable, INSTALL_STREAM, error)
                logged = True
            await backoff.wait()
    ack_wait = float(info.config.ack_wait or SERVER_DEFAULT_ACK_WAIT_SECONDS)
    log.info("bound to consumer %s on %s (ack_wait %.0fs)", durable, INSTALL_STREAM, ack_wait)
    subscription = await js.pull_subscribe_bind(durable=durable, stream=INSTALL_STREAM)
    return subscription, ack_wait


async def messages(subscription: JetStreamContext.PullSubscription) -> AsyncIterator[Msg]:
    """The consumer's messages, one at a time: installs on one silo run one after the other."""
    backoff = Backoff()
    while True:
        try:
            (msg,) = await subscription.fetch(1, timeout=FETCH_SECONDS)
        except TimeoutError:  # nats-py raises its own subclass, or the builtin one, depending on the path
            continue  # nothing to do yet (or the hub is unreachable: nats-py reconnects meanwhile)
        except nats.js.errors.APIError as error:
            log.warning("fetch from %s failed: %s", INSTALL_STREAM, error)
            await backoff.wait()
            continue
        backoff = Backoff()
        yield msg


@contextlib.asynccontextmanager
async def kept_in_progress(msg: Msg, every: float) -> AsyncIterator[None]:
    """Tell JetStream every `every` seconds that `msg` is still being worked on, so a long install is
    not redelivered; stopping the beats (or the agent dying) lets ack_wait expire and redeliver it."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await msg.in_progress()
            except nats.errors.Error as error:
                log.warning("in-progress ack failed: %s", error)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
