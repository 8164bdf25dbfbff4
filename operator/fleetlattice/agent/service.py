"""The agent process: connect to the silo's leaf, announce itself, serve the install queue, stop cleanly.

It signs in to the leaf with the silo's local NKey (the leaf admits nothing else; its remote carries the
silo's hub identity, and the hub enforces the silo's permissions), with the silo's own inbox prefix (the
only inboxes the hub lets the silo receive on), and reaches the hub's JetStream through the hub's domain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

import nats.errors
from nats.aio.client import Client

from fleetlattice.agent.command_plan import CommandPlan
from fleetlattice.agent.consumer import bind, messages
from fleetlattice.agent.heartbeat import announce_boot, heartbeat
from fleetlattice.agent.ledger import Ledger
from fleetlattice.agent.plan import InstallPlan
from fleetlattice.agent.worker import Worker
from fleetlattice.api.bus import JS_DOMAIN, inbox_prefix
from fleetlattice.api.messages import SiloState
from fleetlattice.clients import nats_connection

log = logging.getLogger(__name__)

PlanKind = Literal["builtin", "command"]
T = TypeVar("T")
# JetStream API replies cross the leaf and the hub; a little slack over nats-py's default.
JS_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class AgentConfig:
    silo: str
    nats_url: str
    nkey_seed: str | None = None  # the leaf's local NKey; None only for a leaf that admits anyone
    plan: PlanKind = "builtin"
    manifests: Path | None = None
    namespaces: frozenset[str] = frozenset()  # where params may place objects (builtin plan)
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
    # Imported here: the Kubernetes client takes seconds to import, and a command-plan agent never needs it.
    from fleetlattice.agent.builtin_plan import BuiltinPlan
    from fleetlattice.agent.cluster import Cluster

    return BuiltinPlan(config.manifests, config.silo, Cluster(config.kubeconfig), config.namespaces)


class _ConnectionLog:
    """nats-py's callbacks, logged once per outage rather than once per retry (every second)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.nc: Client | None = None  # once connected: a connect attempt closed again is no lost connection
        self.failing = False

    async def disconnected(self) -> None:
        if self.nc is not None and not self.nc.is_closed:  # closing on purpose (drain at shutdown) is no loss
            log.warning("connection to the leaf lost, reconnecting")

    async def reconnected(self) -> None:
        self.failing = False
        log.info("connection to the leaf restored")

    async def error(self, error: Exception) -> None:
        log.log(logging.DEBUG if self.failing else logging.WARNING, "cannot reach %s: %s", self.url, error)
        self.failing = True


async def connect(config: AgentConfig) -> Client:
    """Connect to the leaf, retrying until it is up (it may start after the agent), reconnecting forever."""
    connection_log = _ConnectionLog(config.nats_url)
    # max_reconnect_attempts=-1 makes nats-py retry the first connect forever too, not only reconnects.
    nc = await nats_connection.connect(
        servers=[config.nats_url],
        name=f"fleetlattice-agent/{config.silo}",
        inbox_prefix=inbox_prefix(config.silo).encode(),
        nkeys_seed_str=config.nkey_seed,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        disconnected_cb=connection_log.disconnected,
        reconnected_cb=connection_log.reconnected,
        error_cb=connection_log.error,
    )
    connection_log.nc, connection_log.failing = nc, False
    return nc


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None (and `work` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


async def _serve(worker: Worker) -> None:
    subscription, ack_wait = await bind(worker.js, worker.silo)
    try:
        async for msg in messages(subscription):
            try:
                await worker.handle(msg, ack_wait)
            except Exception:
                # Left unacked: JetStream redelivers it after ack_wait, and the ledger prevents a double run.
                # One bad message (or a lost connection) must not stop the silo's installs.
                log.exception("message left unacked for redelivery")
    finally:
        # Discard, not drain: a fetch cancelled by the stop still gets its expiry status later, which
        # nobody would consume, and draining would wait for it until nats-py's drain timeout (30s).
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()


async def run_agent(config: AgentConfig, plan: InstallPlan, stop: asyncio.Event) -> None:
    """Run until `stop` is set. An install in flight is then abandoned unacked, for redelivery."""
    ledger = Ledger(config.state_dir)
    nc = await _unless_stopped(connect(config), stop)  # a leaf that never comes up must not block a stop
    if nc is None:
        return
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
    try:
        # The tasks run until cancelled, so one that ends has crashed: stop and let it raise below.
        await _unless_stopped(asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED), stop)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(nats.errors.Error):
            await nc.drain()
        log.info("agent for silo %s stopped", config.silo)
    for result in results:
        if isinstance(result, Exception):
            raise result


async def _main(config: AgentConfig, plan: InstallPlan) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_agent(config, plan, stop)


def main(config: AgentConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        plan = make_plan(config)
    except ValueError as error:
        log.error("%s", error)
        return 2
    asyncio.run(_main(config, plan))
    return 0
