"""Scenario 3: install status latency. N SiloInstalls at once on N silos whose synthetic agents report
progress then done; each install's clock runs from its `done` publish to a Kubernetes watch showing
Succeeded. The operator's API writes per install come from the API server's audit log."""

from __future__ import annotations

from typing import Any

from .harness import Env, count_requests, create_namespace, delete_namespace, deploy_hub
from .stats import latency_summary
from .synthetic_agent import Fleet
from .watcher import FirstSeen

API = "fleet.lattice.dev/v1alpha1"


def silo_leaf(silo: str, hub: str, mode: str = "External") -> dict[str, Any]:
    return {"apiVersion": API, "kind": "SiloLeaf", "metadata": {"name": silo},
            "spec": {"silo": silo, "hub": hub, "leaf": {"mode": mode}}}


def silo_install(name: str, silo: str, version: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "SiloInstall", "metadata": {"name": name},
            "spec": {"silo": silo, "version": version, "timeout": "15m"}}


# Installs then made one at a time (each after the previous one Succeeded), on the first silos.
ALONE = 10


def phase(value: str):
    return lambda obj: (obj.get("status") or {}).get("phase") == value


def writes_per_install(requests: dict[str, Any], n: int) -> float:
    writes = requests["writes"]
    return round((writes.get("siloinstalls", 0) + writes.get("siloinstalls/status", 0)) / n, 2)


async def measure(env: Env, n: int) -> dict[str, Any]:
    namespace = create_namespace(env.kubectl, "bench-installs")
    try:
        hub = deploy_hub(env, namespace)
        silos = [f"inst-{i:03d}" for i in range(n)]
        for silo in silos:
            env.create("siloleaves", namespace, silo_leaf(silo, hub.name))
        fleet = Fleet(hub.url)
        await fleet.serve_until_connected(env, namespace, silos)
        watcher = FirstSeen(env, namespace, "siloinstalls", phase("Succeeded"))
        watcher.start()
        audit = env.audit()
        try:
            for silo in silos:
                env.create("siloinstalls", namespace, silo_install(f"{silo}-v1", silo, "v1"))
            await watcher.wait_all([f"{silo}-v1" for silo in silos], 120 + 2 * n)
            requests = count_requests(audit.operator_requests())
            # Then one install at a time: the same path with nothing queued beside it.
            for silo in silos[:ALONE]:
                env.create("siloinstalls", namespace, silo_install(f"{silo}-v2", silo, "v2"))
                await watcher.wait_all([f"{silo}-v2"], 120)
        finally:
            watcher.stop()
            await fleet.close()

        def latencies(version: str) -> list[float]:
            return [seen - fleet.done_sent[watcher.objects[name]["status"]["requestId"]]
                    for name, seen in watcher.seen.items() if name.endswith(f"-{version}")]

        alone = latency_summary(latencies("v2"))
        return {"n": n, **latency_summary(latencies("v1")), "api_writes_per_install": writes_per_install(requests, n),
                "alone_n": alone["n"], "alone_p50_ms": alone["p50_ms"], "alone_max_ms": alone["max_ms"],
                "operator_requests": requests}
    finally:
        delete_namespace(env.kubectl, namespace)
