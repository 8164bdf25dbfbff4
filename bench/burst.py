"""Scenario 5: a burst of progress reports. Every silo's agent holds a fresh request; then one publisher
(one process, one event loop, each silo's own connection) sends `per_silo` progress reports for every
silo, round-robin, as fast as it can. The operator's durable consumer backlog is sampled throughout:
a backlog that keeps rising while the publisher runs means the operator falls behind."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fleetlattice.api.bus import INSTALL_STREAM, OPERATOR_DURABLE

from .harness import Env, async_wait_for, count_requests
from .installs import silo_install, writes_per_install
from .scale import ScaleFleet
from .watcher import FirstSeen

SAMPLE_SECONDS = 0.25


async def _sample_backlog(run: ScaleFleet, samples: list[tuple[float, int]], stop: asyncio.Event) -> None:
    nc = await run.hub.connect_operator()
    try:
        js = nc.jetstream()
        while not stop.is_set():
            info = await js.consumer_info(INSTALL_STREAM, OPERATOR_DURABLE)
            samples.append((time.perf_counter(), info.num_pending + info.num_ack_pending))
            await asyncio.sleep(SAMPLE_SECONDS)  # the sampling period
    finally:
        await nc.close()


def _backlog_at(samples: list[tuple[float, int]], at: float) -> int:
    """The last sample taken at or before `at`."""
    return max(((t, b) for t, b in samples if t <= at), default=(0.0, 0))[1]


async def measure(env: Env, run: ScaleFleet, per_silo: int) -> dict[str, Any]:
    agents = [run.fleet.agents[silo] for silo in run.silos]
    run.fleet.behaviour = run.fleet.hold
    names = [f"{silo}-burst" for silo in run.silos]
    for silo, name in zip(run.silos, names, strict=True):
        env.create("siloinstalls", run.namespace, silo_install(name, silo, "burst"))

    async def all_held() -> bool:
        return all(a.held is not None and a.held.version == "burst" for a in agents)

    await async_wait_for(all_held, 300 + len(agents), "every agent holding its burst request")
    final = FirstSeen(env, run.namespace, "siloinstalls",
                      lambda obj: ((obj.get("status") or {}).get("progress") or {}).get("index") == per_silo)
    final.start()
    samples: list[tuple[float, int]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_backlog(run, samples, stop))
    audit = env.audit()
    try:
        started = time.perf_counter()
        for index in range(1, per_silo + 1):
            for agent in agents:
                await run.fleet.publish_progress(agent, index, per_silo)
        await asyncio.gather(*(agent.nc.flush() for agent in agents))
        published = time.perf_counter()
        await final.wait_all(names, 600)
        applied = max(final.seen.values())
    finally:
        final.stop()
        stop.set()
        await sampler
    total = per_silo * len(agents)
    midpoint = started + (published - started) / 2
    requests = count_requests(audit.operator_requests())
    return {
        "messages": total,
        "silos": len(agents),
        "publish_s": round(published - started, 2),
        "publish_rate_per_s": round(total / (published - started)),
        "all_applied_s": round(applied - started, 2),
        "end_to_end_rate_per_s": round(total / (applied - started)),
        "backlog_mid_publish": _backlog_at(samples, midpoint),
        "backlog_at_publish_end": _backlog_at(samples, published),
        "backlog_peak": max((b for _, b in samples), default=0),
        "drain_after_publish_s": round(applied - published, 2),
        "api_writes_per_install": writes_per_install(requests, len(agents)),
    }
