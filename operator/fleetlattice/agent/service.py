"""The agent process: connect to the silo's leaf, announce itself, serve the install queue, stop cleanly.

It connects to the leaf without credentials (the leaf's remote carries the silo's credential to the
hub, which enforces the silo's permissions), with the silo's own inbox prefix (the only inboxes the
hub lets the silo receive on), and reaches the hub's JetStream through the hub's domain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import nats
import nats.errors
from nats.aio.client import Client

from ..api.messages import SiloState
from ..render.permissions import JS_DOMAIN, inbox_prefix
from .builtin_plan import BuiltinPlan
from .cluster import Cluster
from .command_plan import CommandPlan
from .consumer import Backoff, bind, messages
from .heartbeat import announce_boot, heartbeat
from .ledger import Ledger
from .plan import InstallPlan
from .worker import Worker

log = logging.getLogger(__name__)

PlanKind = Literal["builtin", "command"]
# JetStream API replies cross the leaf and the hub; a little slack over nats-py's default.
JS_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class AgentConfig:
    silo: str
    nats_url: str
    plan: PlanKind = "builtin"
    manifests: Path | None = None
    command: str | None = None
    kubeconfig: str | None = None
    heartbeat_seconds: float = 10.0
    state_dir: Path = Path("/var/lib/fleetlattice-agent")


def make_plan(config: AgentConfig) -> InstallPlan:
    if config.plan == "command":
        if not config.command:
            raise ValueError("--plan command needs --command")
        return CommandPlan(config.command, config.silo)
    if config.manifests is None or not config.manifests.is_dir():
        raise ValueError("--plan builtin needs --manifests, a directory of manifest templates")
    return BuiltinPlan(config.manifests, config.silo, Cluster(config.kubeconfig))


async def connect(config: AgentConfig) -> Client:
    """Connect, retrying until the leaf is up (nats-py only reconnects once it was connected), then
    reconnecting forever."""

    async def disconnected() -> None:
        log.warning("connection to the leaf lost, reconnecting")

    async def reconnected() -> None:
        log.info("connection to the leaf restored")

    async def error(e: Exception) -> None:
        log.debug("NATS error: %s", e)

    backoff = Backoff()
    while True:
        try:
            return await nats.connect(
                servers=[config.nats_url],
                name=f"fleetlattice-agent/{config.silo}",
                inbox_prefix=inbox_prefix(config.silo).encode(),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
        except (OSError, nats.errors.Error) as e:
            log.warning("cannot connect to %s yet: %s", config.nats_url, e)
            await backoff.wait()


async def _serve(worker: Worker) -> None:
    subscription, ack_wait = await bind(worker.js, worker.silo)
    async for msg in messages(subscription):
        try:
            await worker.handle(msg, ack_wait)
        except Exception:
            # Left unacked: JetStream redelivers it after ack_wait, and the ledger prevents a double run.
            # One bad message (or a lost connection) must not stop the silo's installs.
            log.exception("message left unacked for redelivery")


async def run_agent(config: AgentConfig, stop: asyncio.Event) -> None:
    """Run until `stop` is set. An install in flight is then abandoned unacked, for redelivery."""
    plan = make_plan(config)
    ledger = Ledger(config.state_dir)
    nc = await connect(config)
    js = nc.jetstream(domain=JS_DOMAIN, timeout=JS_TIMEOUT_SECONDS)
    worker = Worker(config.silo, js, plan, ledger)

    def state() -> SiloState:
        installed, result = ledger.record.installed, ledger.record.result
        return SiloState(
            silo=config.silo,
            ts=datetime.now(UTC),
            version=installed.version if installed else None,
            pods=result.get("pods"),
            active_request_id=worker.active_request_id,
        )

    log.info("agent for silo %s connected to %s", config.silo, config.nats_url)
    await announce_boot(nc, config.silo)
    tasks = [
        asyncio.create_task(heartbeat(js, config.silo, state, config.heartbeat_seconds), name="heartbeat"),
        asyncio.create_task(_serve(worker), name="serve"),
    ]
    stopped = asyncio.create_task(stop.wait(), name="stop")
    try:
        # The tasks run until cancelled, so one that ends has crashed: stop and let it raise below.
        await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, *tasks):
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(nats.errors.Error):
            await nc.drain()
        log.info("agent for silo %s stopped", config.silo)
    for result in results:
        if isinstance(result, Exception):
            raise result


async def _main(config: AgentConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_agent(config, stop)


def main(config: AgentConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(config))
    return 0
