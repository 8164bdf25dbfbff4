"""A NATS connection whose handshake was answered and whose flush() means it: the one way this package, its
bench and its tests connect.

Handshake: nats-py's `connect()` writes CONNECT and PING, then reads exactly one line. nats-server arms a first PING 2 s
after it processes CONNECT; when the server gets to the client's PING later than that (a loaded machine, a
descheduled process, a bcrypt check), its own PING is that one line, and `connect()` returns with the client
still CONNECTING. Such a client never sends anything again, SUB, PUB or a flush's PING, while `flush()`
returns at once without error, and nothing heals it until the server drops it as stale minutes later
(bench/findings/bcrypt-connect-handshake.md; nats.py#93). So a client left CONNECTING is closed and the
connect made again.

Flush: nats-py's `flush()` writes its PING straight to the socket, while SUB and PUB commands wait in a buffer
for its flusher task, so the PING can overtake them and the PONG come back before the server has seen the
subscription. A message another connection then publishes misses it (e2e: the subscription was on the server,
its message count 0). Here `flush()` first waits until that buffer is written."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats.aio.client
import nats.errors

log = logging.getLogger(__name__)

# Each lost handshake costs the server's 2 s first-ping delay, so a few attempts span a stall of several
# seconds; a server that never answers a handshake is reported, not retried forever.
HANDSHAKE_ATTEMPTS = 5


class Client(nats.aio.client.Client):
    # nats-py's signature, timeout included.
    async def flush(self, timeout: int = nats.aio.client.DEFAULT_FLUSH_TIMEOUT) -> None:  # noqa: ASYNC109
        """Return once the server has processed every command given before: the PING goes after them."""
        if self.is_connected:
            try:
                await asyncio.wait_for(self._flush_pending(force_flush=True), timeout)
            except TimeoutError as exc:
                raise nats.errors.FlushTimeoutError from exc
        await super().flush(timeout)


class HandshakeNotAnswered(nats.errors.Error):
    """The server never answered the client's handshake PING before sending its own."""


async def connect(**options: Any) -> Client:
    """`nats.connect(**options)`, returning only a client that is CONNECTED."""
    for attempt in range(1, HANDSHAKE_ATTEMPTS + 1):
        nc = Client()
        await nc.connect(**options)
        if nc.is_connected:
            return nc
        await nc.close()
        log.warning("NATS handshake with %s not answered before the server's PING (attempt %d of %d), "
                    "connecting again", options.get("servers"), attempt, HANDSHAKE_ATTEMPTS)
    raise HandshakeNotAnswered(f"nats: {HANDSHAKE_ATTEMPTS} handshakes with {options.get('servers')} were "
                               f"overtaken by the server's PING")
