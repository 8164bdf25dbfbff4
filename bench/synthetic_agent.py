"""Synthetic agents for many silos in one process. Each silo connects to the hub with its own generated
credential and inbox prefix (what its agent gets through its leaf), takes requests from its own pull
consumer and reports with the real agent's Reporter; only the work itself is skipped."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kubernetes import client
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext

from fleetlattice.agent.consumer import bind, messages
from fleetlattice.agent.reports import Reporter
from fleetlattice.api.bus import inbox_prefix, install_subject
from fleetlattice.api.messages import InstallDone, InstallProgress, InstallRequest
from fleetlattice.clients import nats_connection
from fleetlattice.logic.credentials import SEED_KEY
from fleetlattice.render.names import SiloRef

from .harness import Env, async_wait_for

log = logging.getLogger("bench.agent")

STEPS = ("render", "apply", "verify")


@dataclass
class SiloAgent:
    silo: str
    nc: NATS
    js: JetStreamContext
    disconnects: int = 0
    held: InstallRequest | None = None  # a request the agent took and has not finished


# Called with the agent and its request; it reports what it wants, e.g. progress then done.
Behaviour = Callable[[SiloAgent, InstallRequest], Awaitable[None]]


@dataclass
class Fleet:
    """The silos' agents. `done_sent` records when each request's `done` went out (monotonic clock)."""

    url: str
    behaviour: Behaviour | None = None  # what every agent does with a request; None = complete()
    agents: dict[str, SiloAgent] = field(default_factory=dict)
    done_sent: dict[str, float] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def complete(self, agent: SiloAgent, request: InstallRequest) -> None:
        """Progress for each step, then done."""
        reporter = Reporter(agent.js, agent.silo, request.request_id)
        for index, step in enumerate(STEPS, 1):
            await reporter.progress(step, index, len(STEPS), f"{step} ok")
        self.done_sent[request.request_id] = time.perf_counter()
        await reporter.done(InstallDone(request_id=request.request_id, version=request.version, pods=1, health="ok"))

    @staticmethod
    async def hold(agent: SiloAgent, request: InstallRequest) -> None:
        """Take the request and report nothing yet: the burst scenario reports for it."""
        agent.held = request

    async def connect(self, silo: str, seed: str) -> SiloAgent:
        agent_ref: list[SiloAgent] = []

        async def disconnected() -> None:
            if agent_ref:
                agent_ref[0].disconnects += 1

        async def refused(error: Exception) -> None:
            """Quiet: a credential is refused until the hub has loaded it, and the caller retries."""

        # max_reconnect_attempts=-1 also retries the first connect until the hub accepts the credential.
        nc = await nats_connection.connect(servers=self.url, nkeys_seed_str=seed, name=f"bench-agent/{silo}",
                                           inbox_prefix=inbox_prefix(silo).encode(), connect_timeout=10,
                                           max_reconnect_attempts=-1, reconnect_time_wait=1,
                                           disconnected_cb=disconnected, error_cb=refused)
        agent = SiloAgent(silo, nc, nc.jetstream())
        agent_ref.append(agent)
        self.agents[silo] = agent
        return agent

    async def _connect_and_serve(self, silo: str, seed: str) -> None:
        try:
            await self._serve(await self.connect(silo, seed))
        except Exception:
            log.exception("synthetic agent of %s stopped", silo)  # the scenario then times out, saying which
            raise

    async def _serve(self, agent: SiloAgent) -> None:
        subscription, _ = await bind(agent.js, agent.silo)
        async for msg in messages(subscription):
            if msg.subject.endswith(".request"):
                await (self.behaviour or self.complete)(agent, InstallRequest.model_validate_json(msg.data))
            await msg.ack()

    async def serve_until_connected(self, env: Env, namespace: str, silos: list[str]) -> None:
        """Each silo's agent connects as soon as the operator has issued its credential and the hub has
        loaded it, then serves; returns once every silo is connected."""
        waiting = set(silos)
        while waiting:
            for silo, seed in (await asyncio.to_thread(seeds, env, namespace, waiting)).items():
                self._tasks.append(asyncio.create_task(self._connect_and_serve(silo, seed)))
                waiting.discard(silo)
            if waiting:
                await asyncio.sleep(0.5)  # poll interval for credentials the operator has not issued yet

        async def connected() -> bool:
            return all(silo in self.agents for silo in silos)

        await async_wait_for(connected, 600, f"{len(silos)} agents connected")

    async def publish_progress(self, agent: SiloAgent, index: int, total: int) -> None:
        """A core publish of one progress report for the held request (the burst's one publisher)."""
        assert agent.held is not None
        report = InstallProgress(request_id=agent.held.request_id, step=f"step-{index}", index=index, total=total)
        await agent.nc.publish(install_subject(agent.silo, "progress"), report.encode())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(agent.nc.close() for agent in self.agents.values()), return_exceptions=True)


def seeds(env: Env, namespace: str, silos: set[str]) -> dict[str, str]:
    """The NKey seeds of those silos whose credential Secret the operator has written (one list call)."""
    by_secret = {SiloRef(silo).credentials_secret: silo for silo in silos}
    found = {}
    for secret in client.CoreV1Api(env.api).list_namespaced_secret(namespace).items:
        silo = by_secret.get(secret.metadata.name)
        if silo and secret.data and SEED_KEY in secret.data:
            found[silo] = base64.b64decode(secret.data[SEED_KEY]).decode()
    return found
