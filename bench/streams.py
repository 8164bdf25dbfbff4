"""Scenarios 1 and 2: stream reconcile latency, Fleet Lattice's FleetStreams and NACK's Streams.

Both controllers get the same stream configs on the same hub in the same run. Each object's clock starts
just before its create request is sent and stops when the hub announces the stream: a subscriber on
JetStream's stream-created advisories, so nothing is polled."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg

from . import nack
from .harness import Env, Hub, async_wait_for, create_namespace, delete_namespace, deploy_hub
from .stats import latency_summary, ratio

CREATED_ADVISORIES = "$JS.EVENT.ADVISORY.STREAM.CREATED.*"
MAX_AGE = "1h"


@dataclass
class StreamsUnderTest:
    """One controller's share of the run: its objects and how to make them."""

    controller: str
    plural: str
    group_version: str
    prefix: str  # object names, stream names and subjects are derived from it
    manifest: Callable[[str, str, str], dict[str, Any]]  # (object name, stream name, subject) -> object

    def objects(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        """(stream name, object) for i in 0..n-1."""
        result = []
        for i in range(n):
            stream = f"BENCH_{self.prefix.upper()}_{i:04d}"
            result.append((stream, self.manifest(f"bench-{self.prefix}-{i:04d}", stream,
                                                 f"bench.{self.prefix}.{i:04d}.>")))
        return result


def fleet_lattice_streams(hub: str) -> StreamsUnderTest:
    def manifest(name: str, stream: str, subject: str) -> dict[str, Any]:
        # deletionPolicy Delete: NACK's default, so both controllers put a finalizer on each object.
        return {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "FleetStream", "metadata": {"name": name},
                "spec": {"hub": hub, "name": stream, "subjects": [subject], "storage": "File", "replicas": 1,
                         "maxAge": MAX_AGE, "deletionPolicy": "Delete"}}

    return StreamsUnderTest("fleet-lattice", "fleetstreams", "fleet.lattice.dev/v1alpha1", "ours", manifest)


def nack_streams() -> StreamsUnderTest:
    def manifest(name: str, stream: str, subject: str) -> dict[str, Any]:
        return nack.stream_manifest(name, stream, subject, MAX_AGE)

    return StreamsUnderTest("nack", "streams", nack.STREAM_API_VERSION, "nack", manifest)


@dataclass
class Advisories:
    """When each stream was announced by the hub, on this process's monotonic clock."""

    seen: dict[str, float] = field(default_factory=dict)
    all_seen: asyncio.Event = field(default_factory=asyncio.Event)
    expected: set[str] = field(default_factory=set)

    async def on_message(self, msg: Msg) -> None:
        stream = json.loads(msg.data)["stream"]
        self.seen.setdefault(stream, time.perf_counter())
        if self.expected and self.expected <= self.seen.keys():
            self.all_seen.set()


def _create_all(env: Env, namespace: str, under_test: StreamsUnderTest, objects: list[tuple[str, dict[str, Any]]],
                sent: dict[str, float]) -> None:
    for stream, body in objects:
        sent[stream] = time.perf_counter()
        env.create(under_test.plural, namespace, body, under_test.group_version)


async def measure(env: Env, hub: Hub, namespace: str, under_test: StreamsUnderTest, n: int) -> dict[str, Any]:
    """Create n objects back to back from one thread; latency per stream = advisory seen - create sent."""
    objects = under_test.objects(n)
    advisories = Advisories(expected={stream for stream, _ in objects})
    nc = await hub.connect_operator()
    sent: dict[str, float] = {}
    try:
        await nc.subscribe(CREATED_ADVISORIES, cb=advisories.on_message)
        await nc.flush()
        await asyncio.to_thread(_create_all, env, namespace, under_test, objects, sent)
        await asyncio.wait_for(advisories.all_seen.wait(), timeout=120 + 2 * n)
    finally:
        await nc.close()
    latencies = [advisories.seen[stream] - sent[stream] for stream, _ in objects]
    return {
        "controller": under_test.controller,
        "n": n,
        **latency_summary(latencies),
        "total_s": round(max(advisories.seen[s] for s, _ in objects) - min(sent.values()), 2),
        "create_requests_s": round(max(sent.values()) - min(sent.values()), 2),
    }


async def delete_all(env: Env, namespace: str, under_test: StreamsUnderTest, n: int) -> None:
    """Delete the objects while their controller runs (it removes the streams and its finalizers)."""
    group, version = under_test.group_version.split("/")
    for i in range(n):
        await asyncio.to_thread(env.custom.delete_namespaced_custom_object, group, version, namespace,
                                under_test.plural, f"bench-{under_test.prefix}-{i:04d}")

    async def gone() -> bool:
        left = await asyncio.to_thread(env.list, under_test.plural, namespace, under_test.group_version)
        return not [o for o in left if o["metadata"]["name"].startswith(f"bench-{under_test.prefix}-")]

    await async_wait_for(gone, 300, f"{under_test.controller} objects deleted", interval=1)


async def compare(env: Env, n: int) -> dict[str, dict[str, Any]]:
    """NACK first, then Fleet Lattice: ours then works against a server already holding n more streams."""
    namespace = create_namespace(env.kubectl, "bench-streams")
    try:
        hub = deploy_hub(env, namespace)
        env.kubectl("apply", "--server-side", "-f", str(nack.crds_path()))
        env.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/streams.jetstream.nats.io")
        controller = nack.NackController(nack.build(env.paths.cache), env.kubeconfig, namespace, hub.url,
                                         hub.operator_seed(), env.workdir)
        controller.start()
        try:
            theirs = await measure(env, hub, namespace, nack_streams(), n)
            ours = await measure(env, hub, namespace, fleet_lattice_streams(hub.name), n)
            await delete_all(env, namespace, nack_streams(), n)
        finally:
            controller.stop()
        await delete_all(env, namespace, fleet_lattice_streams(hub.name), n)
    finally:
        delete_namespace(env.kubectl, namespace)
    ratios = {key: ratio(ours[f"{key}_ms"], theirs[f"{key}_ms"]) for key in ("p50", "p95", "p99")}
    return {"streams_fleet_lattice": ours, "streams_nack": {**theirs, "nack_version": nack.version()},
            "streams_ratio": {**ratios, "total": ratio(ours["total_s"], theirs["total_s"])}}
