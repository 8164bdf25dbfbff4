"""Spoof attempts: one silo's credentials (hub and leaf) used against another silo's subjects, requests,
inbox and state, and clients that do not authenticate at all, at the hub and at a leaf. An observer with
the operator's credential sees every message on the bus: a spoofed message it sees, a subscription that
receives, a read that returns or a connection that opens is an accepted attempt. The same attempts made
as the silo itself are the control: they must get through."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats
import nats.errors
from localcluster import BUSYBOX_IMAGE, async_wait_for, wait_for
from nats.aio.client import Client as NATS

from fleet import service_url
from fleetlattice.api.bus import JS_DOMAIN, STATE_BUCKET, agent_state_key, event_subject, inbox_prefix, install_subject
from fleetlattice.clients import nats_connection
from fleetlattice.render.names import SiloRef

from .counting import FaultRow
from .fleet import FaultFleet

DENIAL_SECONDS = 2.0  # how long a refused subscription gets to receive the observer's probe anyway
POD_SECONDS = 120
CONTROL_SECONDS = 60
# The NATS protocol by hand from a pod with no credential: a server that accepted the CONNECT answers the PING
# after the PUB with PONG; one that requires authentication answers -ERR 'Authorization Violation' and closes.
RAW_PAYLOAD = '{"requestId":"pod"}'


def _raw_attempt(host: str, subject: str) -> str:
    return (f"printf 'CONNECT {{\"verbose\":false}}\\r\\nPUB {subject} {len(RAW_PAYLOAD)}\\r\\n{RAW_PAYLOAD}\\r\\n"
            f"PING\\r\\n' | timeout 5 nc {host} 4222; echo '<end>'")


@dataclass
class Spoofing:
    fleet: FaultFleet
    observer: NATS
    seen: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def _as(self, url: str, seed: str | None, silo: str | None = None) -> NATS:
        async def on_error(error: Exception) -> None:
            self.errors.append(str(error))

        return await nats_connection.connect(servers=url, nkeys_seed_str=seed, connect_timeout=5, allow_reconnect=False,
                                             inbox_prefix=inbox_prefix(silo).encode() if silo else b"_INBOX",
                                             error_cb=on_error)

    async def _denied(self, before: int) -> bool:
        """The server's -ERR reaches the error callback asynchronously: wait a bounded time for it."""
        for _ in range(int(DENIAL_SECONDS / 0.05)):
            if any("permissions violation" in e.lower() for e in self.errors[before:]):
                return True
            await asyncio.sleep(0.05)  # poll interval until the denial deadline
        return False

    async def publish_as(self, url: str, seed: str, silo: str, target: str) -> bool:
        """`silo` publishes `target`'s done; accepted if the observer sees it."""
        marker = f"spoof-{uuid.uuid4()}".encode()
        nc = await self._as(url, seed, silo)
        try:
            before = len(self.errors)
            await nc.publish(install_subject(target, "done"), json.dumps({"requestId": marker.decode(),
                                                                          "pods": 7}).encode())
            await nc.flush()
            await self._denied(before)
        finally:
            await nc.close()
        await self.observer.flush()
        return any(marker in body for body in self.seen)

    async def subscribe_as(self, url: str, seed: str, silo: str, target: str) -> bool:
        """`silo` subscribes to `target`'s events and inbox; accepted if the observer's probes reach it."""
        nc = await self._as(url, seed, silo)
        got: list[bytes] = []

        async def received(msg: nats.aio.msg.Msg) -> None:
            got.append(msg.data)

        try:
            before = len(self.errors)
            for subject in (event_subject(target, "spoofprobe"), f"{inbox_prefix(target)}.spoofprobe"):
                await nc.subscribe(subject, cb=received)
            await nc.flush()
            await self._denied(before)
            await self.observer.publish(event_subject(target, "spoofprobe"), b"probe")
            await self.observer.publish(f"{inbox_prefix(target)}.spoofprobe", b"probe")
            await self.observer.flush()
            await nc.flush()
        finally:
            await nc.close()
        return bool(got)

    async def read_state_as(self, url: str, seed: str, silo: str, target: str) -> bool:
        """`silo` reads `target`'s agent heartbeat key; accepted if it gets a value."""
        nc = await self._as(url, seed, silo)
        try:
            kv = await nc.jetstream(domain=JS_DOMAIN, timeout=DENIAL_SECONDS).key_value(STATE_BUCKET)
            entry = await kv.get(agent_state_key(target))
            return entry.value is not None
        except (nats.errors.Error, TimeoutError):
            return False
        finally:
            await nc.close()

    async def connect_unauthenticated(self, url: str) -> bool:
        try:
            nc = await self._as(url, None)
        except (nats.errors.Error, OSError):
            return False
        await nc.close()
        return True


def unauthenticated_pod(fleet: FaultFleet, attempts: int) -> tuple[int, int]:
    """A pod in the silos' namespace that signs in to nothing: `attempts` raw publishes of silos' `done`,
    round robin over the leaves' and the hub's client ports; returns (attempts, accepted)."""
    targets = [(f"{SiloRef(silo).leaf}.{fleet.namespace}.svc", install_subject(silo, "done"))
               for silo in fleet.silos] + [(f"{fleet.hub.name}.{fleet.namespace}.svc", install_subject(
                   fleet.silos[0], "done"))]
    script = "\n".join(_raw_attempt(host, subject)
                       for _, (host, subject) in zip(range(attempts), itertools.cycle(targets)))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unauthenticated"},
           "spec": {"restartPolicy": "Never", "containers": [
               {"name": "c", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script]}]}}
    kubectl = fleet.env.kubectl
    kubectl("apply", "-n", fleet.namespace, "-f", "-", input=json.dumps(pod))
    try:
        wait_for(lambda: kubectl.json("get", "pod", "unauthenticated", "-n", fleet.namespace)["status"].get(
            "phase") in ("Succeeded", "Failed"), POD_SECONDS, "the unauthenticated pod's attempts")
        answers = kubectl("logs", "unauthenticated", "-n", fleet.namespace).stdout.split("<end>")[:-1]
    finally:
        kubectl("delete", "pod", "unauthenticated", "-n", fleet.namespace, "--wait=false")
    if len(answers) != attempts or not all("Authorization Violation" in a or "PONG" in a for a in answers):
        raise AssertionError(f"the pod's attempts did not all get an answer: {answers}")
    return attempts, sum("PONG" in answer for answer in answers)


async def spoofs(fleet: FaultFleet, total: int) -> FaultRow:
    row = FaultRow("spoof attempts (other silos' credentials, unauthenticated)", total)
    observer = await fleet.hub.connect_operator()
    spoofing = Spoofing(fleet, observer)

    async def watch(msg: nats.aio.msg.Msg) -> None:
        spoofing.seen.append(msg.data)

    await observer.subscribe("fleet.install.*.done", cb=watch)
    await observer.flush()
    hub = fleet.hub.url
    leaves = {silo: service_url(fleet.env.kubectl, fleet.namespace, SiloRef(silo).leaf) for silo in fleet.silos}
    hub_seeds = {silo: fleet.hub.silo_seed(silo) for silo in fleet.silos}
    local_seeds = {silo: fleet.hub.local_seed(silo) for silo in fleet.silos}
    pairs = [(a, b) for a in fleet.silos for b in fleet.silos if a != b]
    attempts: list[tuple[str, Callable[[str, str], Awaitable[bool]]]] = [
        ("publish another silo's done at the hub", lambda a, b: spoofing.publish_as(hub, hub_seeds[a], a, b)),
        ("publish another silo's done through own leaf",
         lambda a, b: spoofing.publish_as(leaves[a], local_seeds[a], a, b)),
        ("publish at another silo's leaf with own leaf credential",
         lambda a, b: spoofing.publish_as(leaves[b], local_seeds[a], b, b)),
        ("subscribe to another silo's events and inbox", lambda a, b: spoofing.subscribe_as(hub, hub_seeds[a], a, b)),
        ("read another silo's state key", lambda a, b: spoofing.read_state_as(hub, hub_seeds[a], a, b)),
        ("connect to the hub unauthenticated", lambda a, b: spoofing.connect_unauthenticated(hub)),
        ("connect to a leaf unauthenticated", lambda a, b: spoofing.connect_unauthenticated(leaves[b])),
    ]
    by_kind: dict[str, list[int]] = {}
    try:
        # Each attempt made as the silo itself must succeed, or a refusal below would prove nothing; the state
        # key read waits for the agent's first heartbeat.
        for label, attempt in attempts[:5]:
            await async_wait_for(lambda a=attempt: a(fleet.silos[0], fleet.silos[0]), CONTROL_SECONDS,
                                 f"control: {label}, as the silo itself, let through")
        for n, ((label, attempt), (a, b)) in enumerate(zip(itertools.cycle(attempts), itertools.cycle(pairs))):
            if n == total:
                break
            try:
                accepted = await attempt(a, b)
            except (nats.errors.Error, OSError):
                accepted = False  # refused at connect: what a credential for another leaf gets
            counts = by_kind.setdefault(label, [0, 0])
            counts[0] += 1
            counts[1] += accepted
    finally:
        await observer.close()
    by_kind["raw publish from an unauthenticated pod"] = list(
        await asyncio.to_thread(unauthenticated_pod, fleet, max(3, total // 7)))
    row.repetitions = sum(n for n, _ in by_kind.values())
    row.accepted = sum(accepted for _, accepted in by_kind.values())
    row.notes.append("; ".join(f"{label} {n} (accepted {accepted})" for label, (n, accepted) in by_kind.items()))
    return row
