"""Scenario 4: a thousand silos from cold start, and a hub reload with a thousand silo users.

Every silo has a SiloLeaf and a SiloInstall before the operator starts. A few leaves are real
(InCluster: leaf nats-server pods that dial the hub); the rest are External silos whose leaves never
connect, so their users only sit in the hub's config. Each silo's synthetic agent connects with the
credential the operator issues and completes its install."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .harness import (
    Env,
    Hub,
    OperatorProcess,
    async_wait_for,
    condition,
    count_requests,
    create_namespace,
    delete_namespace,
    deploy_hub,
    earlier_scenarios_gone,
    operator_quiet,
    peak_rss_mib,
)
from .installs import phase, silo_install, silo_leaf, writes_per_install
from .profile import Profiler
from .synthetic_agent import Fleet
from .watcher import FirstSeen


@dataclass
class ScaleFleet:
    """What the scale scenario leaves running for the reload and burst scenarios."""

    namespace: str
    hub: Hub
    fleet: Fleet
    silos: list[str]
    real_leaves: list[str]


async def cold_start(env: Env, n: int, real: int, profile: Path | None = None, memray: Path | None = None,
                     ) -> tuple[dict[str, Any], ScaleFleet, OperatorProcess]:
    """The operator is stopped while the objects are created, then started fresh (so its peak RSS is this
    scenario's); the clock runs from its start to the last install Succeeded and the real leaves Ready.
    On failure nothing is left running: the operator, the agents and the namespace go."""
    namespace = create_namespace(env.kubectl, "bench-scale")
    operator = env.operator("scale")
    operator.memray_output = memray
    fleet: Fleet | None = None
    try:
        warmup = env.operator("scale-warmup")
        warmup.start()
        try:
            # The warm-up operator also removes its finalizers from what earlier scenarios left deleting.
            earlier_scenarios_gone(env, namespace)
            hub = deploy_hub(env, namespace)
        finally:
            warmup.stop()
        fleet = Fleet(hub.url)
        silos = [f"silo-{i:04d}" for i in range(n)]
        result = await _measure_cold_start(env, namespace, hub, fleet, operator, silos, silos[:real], profile)
        return result, ScaleFleet(namespace, hub, fleet, silos, silos[:real]), operator
    except BaseException:
        if fleet is not None:
            await fleet.close()
        operator.stop()
        delete_namespace(env.kubectl, namespace)
        raise


async def _measure_cold_start(env: Env, namespace: str, hub: Hub, fleet: Fleet, operator: OperatorProcess,
                              silos: list[str], real_leaves: list[str], profile: Path | None) -> dict[str, Any]:
    for silo in silos:
        mode = "InCluster" if silo in real_leaves else "External"
        env.create("siloleaves", namespace, silo_leaf(silo, hub.name, mode))
        env.create("siloinstalls", namespace, silo_install(f"{silo}-v1", silo, "v1"))
    installs = FirstSeen(env, namespace, "siloinstalls", phase("Succeeded"))
    leaves = FirstSeen(env, namespace, "siloleaves", lambda obj: condition(obj, "Ready").get("status") == "True")
    installs.start()
    leaves.start()
    audit = env.audit()
    started = time.perf_counter()
    operator.start()
    assert operator.proc is not None
    profiler = Profiler(operator.proc.pid, profile) if profile else None
    agents = asyncio.create_task(fleet.serve_until_connected(env, namespace, silos))
    try:
        if profiler:
            profiler.start()
        await installs.wait_all([f"{silo}-v1" for silo in silos], 600 + len(silos))
        await leaves.wait_all(real_leaves, 300)
        await agents
    finally:
        installs.stop()
        leaves.stop()
        agents.cancel()
        hot = profiler.stop() if profiler else []
    requests = count_requests(audit.operator_requests())
    return {
        "silos": len(silos),
        "real_leaves": len(real_leaves),
        "all_succeeded_s": round(max(installs.seen.values()) - started, 1),
        "real_leaves_ready_s": round(max(leaves.seen.values()) - started, 1),
        "operator_peak_rss_mib": peak_rss_mib(operator.proc.pid),
        "api_requests": requests["total"],
        "api_requests_per_silo": round(requests["total"] / len(silos), 1),
        "api_writes_per_install": writes_per_install(requests, len(silos)),
        "operator_requests": requests,
        **({"profile_top_frames": hot, "profile": str(profile)} if profiler else {}),
    }


def _monitor(pod_ip: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{pod_ip}:8222/{path}", timeout=5) as response:
        return json.loads(response.read())


def _server_time(value: str) -> float:
    """nats-server's RFC 3339 nanosecond timestamps, as epoch seconds (microsecond precision)."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


def _leaf_connections(pod_ips: list[str]) -> set[tuple[str, str, int]]:
    """(hub pod, remote address, remote port): a dropped and re-made connection has a new port."""
    return {(ip, leaf["ip"], leaf["port"]) for ip in pod_ips for leaf in _monitor(ip, "leafz").get("leafs") or []}


# Silos added one at a time: the figure is the slowest of these reloads.
RELOAD_PROBES = 3


async def _reload_once(env: Env, run: ScaleFleet, pod_ips: list[str], silo: str) -> float:
    loaded_before = {ip: _monitor(ip, "varz")["config_load_time"] for ip in pod_ips}
    created = time.time()
    env.create("siloleaves", run.namespace, silo_leaf(silo, run.hub.name))

    async def reloaded() -> list[str] | None:
        loaded = {ip: (await asyncio.to_thread(_monitor, ip, "varz"))["config_load_time"] for ip in pod_ips}
        return list(loaded.values()) if all(loaded[ip] != loaded_before[ip] for ip in pod_ips) else None

    loaded_at = await async_wait_for(reloaded, 300, "hub servers reloaded", interval=0.1)
    return round(max(_server_time(t) for t in loaded_at) - created, 2)


async def hub_reload(env: Env, run: ScaleFleet) -> dict[str, Any]:
    """Silos added one at a time to the settled fleet: each time the operator renders the hub's config with one
    more user and the servers reload it. Each reload is timed from the SiloLeaf create to every hub server
    reporting the new config loaded, and starts once the operator is quiet (the cold start's tail, e.g. its
    queued Events, is the cold start's cost, not the reload's)."""
    pod_ips = [pod["status"]["podIP"] for pod in run.hub.pods()]
    leaves_before = _leaf_connections(pod_ips)
    disconnects_before = sum(agent.disconnects for agent in run.fleet.agents.values())
    settled = [await operator_quiet(env)]
    reloads = []
    for probe in range(RELOAD_PROBES):
        if probe:
            settled.append(await operator_quiet(env))
        reloads.append(await _reload_once(env, run, pod_ips, f"reload-probe-{probe}"))
    leaves_after = _leaf_connections(pod_ips)
    return {
        "silo_users": len(run.silos) + RELOAD_PROBES,
        "hub_servers": len(pod_ips),
        "quiet_after_s": settled,
        "reload_s": max(reloads),
        "reloads_s": reloads,
        "leaf_connections": len(leaves_before),
        "leaf_connections_dropped": len(leaves_before - leaves_after),
        "agent_connections": len(run.fleet.agents),
        "agent_connections_dropped": sum(a.disconnects for a in run.fleet.agents.values()) - disconnects_before,
    }
