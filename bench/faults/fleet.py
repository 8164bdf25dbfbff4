"""The fault suite's fleet: the operator as a process, the example hub, silos with in-cluster leaves, and a
real `fleetlattice agent` per silo (the command plan of tests/e2e/agents.py), each recording every run of
its plan in a run log, so a duplicate install is counted from the agent's side."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents import AgentProcess
from fleet import service_url
from fleetlattice.api.bus import INSTALL_STREAM, OPERATOR_DURABLE, agent_durable
from fleetlattice.render.names import SiloRef

from ..harness import (
    Env,
    Hub,
    OperatorProcess,
    async_wait_for,
    create_namespace,
    delete_namespace,
    deploy_hub,
    wait_for,
)
from ..installs import silo_install, silo_leaf
from .counting import FINAL_PHASES, Outcome, runs_per_install

GROUP, VERSION = "fleet.lattice.dev", "v1alpha1"
LEAVES_CONNECTED_SECONDS = 300
BUS_IDLE_SECONDS = 180


@dataclass
class FaultFleet:
    env: Env
    namespace: str
    hub: Hub
    operator: OperatorProcess
    silos: list[str]
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    expected_pods: dict[str, int] = field(default_factory=dict)  # install name -> the pods its agent reports

    @property
    def workdir(self) -> Path:
        return self.env.workdir

    def run_log(self, silo: str) -> Path:
        return self.workdir / f"runs-{silo}.jsonl"

    def install(self, name: str, silo: str, timeout: str = "15m", retries: int | None = None,
                **params: str) -> None:
        """A SiloInstall whose plan records its runs; each install reports its own pod count (a report
        applied to the wrong install shows)."""
        pods = len(self.expected_pods) % 50 + 1
        self.expected_pods[name] = pods
        body = silo_install(name, silo, "v1")
        body["spec"].update(timeout=timeout, params={"install": name, "pods": str(pods),
                                                     "runLog": str(self.run_log(silo)), **params})
        if retries is not None:
            body["spec"]["retries"] = retries
        self.env.create("siloinstalls", self.namespace, body)

    def get(self, name: str) -> dict[str, Any]:
        return self.env.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "siloinstalls", name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def phases(self, names: list[str]) -> dict[str, str]:
        wanted = set(names)
        items = self.env.list("siloinstalls", self.namespace)
        return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items
                if i["metadata"]["name"] in wanted}

    def wait_final(self, names: list[str], timeout: float) -> float | None:
        """Seconds until every install is in a final phase, None if some are not by the deadline (they count
        as stuck). The API server may be restarting: a failed read counts as "not yet"."""
        start = time.monotonic()
        try:
            wait_for(lambda: set(self.phases(names).values()) <= FINAL_PHASES and len(self.phases(names)) == len(names),
                     timeout, f"{len(names)} installs in a final phase")
        except AssertionError:
            return None
        return round(time.monotonic() - start, 2)

    def outcomes(self, names: list[str]) -> list[Outcome]:
        runs = runs_per_install(json.loads(line) for silo in self.silos if self.run_log(silo).exists()
                                for line in self.run_log(silo).read_text().splitlines() if line)
        result = []
        for name in names:
            status = self.status(name)
            result.append(Outcome(name, status.get("phase", ""), (status.get("result") or {}).get("pods"),
                                  self.expected_pods[name], runs[name]))
        return result

    async def bus_idle(self, silo: str) -> None:
        """Until the agent's and the operator's consumers have nothing pending: every report the agent sent
        is delivered and the operator has handled it."""
        nc = await self.hub.connect_operator()
        try:
            js = nc.jetstream()

            async def idle() -> bool:
                infos = [await js.consumer_info(INSTALL_STREAM, d) for d in (agent_durable(silo), OPERATOR_DURABLE)]
                return all(i.num_ack_pending == 0 and i.num_pending == 0 for i in infos)

            await async_wait_for(idle, BUS_IDLE_SECONDS, f"{silo}'s reports handled")
        finally:
            await nc.close()

    def leaf_pod_ip(self, silo: str) -> str:
        selector = ",".join(f"{k}={v}" for k, v in SiloRef(silo).selector.items())
        pods = self.env.kubectl.json("get", "pods", "-n", self.namespace, "-l", selector)["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get(
            "deletionTimestamp")]
        assert len(running) == 1, f"{silo}: {len(running)} running leaf pods"
        return running[0]["status"]["podIP"]

    def close(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        self.operator.stop()
        delete_namespace(self.env.kubectl, self.namespace)


def _connected(env: Env, namespace: str, silos: list[str]) -> bool:
    leaves = {i["metadata"]["name"]: i for i in env.list("siloleaves", namespace)}
    return all((leaves.get(silo, {}).get("status") or {}).get("connected") for silo in silos)


def start_fleet(env: Env, silos: list[str]) -> FaultFleet:
    """The operator, the hub, every silo's in-cluster leaf connected and its agent started."""
    namespace = create_namespace(env.kubectl, "bench-faults")
    operator = env.operator("faults")
    operator.start()
    fleet = FaultFleet(env, namespace, Hub(env.kubectl, namespace), operator, silos)
    try:
        fleet.hub = deploy_hub(env, namespace)
        for silo in silos:
            env.create("siloleaves", namespace, silo_leaf(silo, fleet.hub.name, "InCluster"))
        wait_for(lambda: _connected(env, namespace, silos), LEAVES_CONNECTED_SECONDS, f"{len(silos)} leaves connected")
        for silo in silos:
            workdir = env.workdir / f"agent-{silo}"
            workdir.mkdir(parents=True, exist_ok=True)
            agent = AgentProcess.command_plan(silo, service_url(env.kubectl, namespace, SiloRef(silo).leaf),
                                              fleet.hub.local_seed(silo), workdir)
            agent.start()
            fleet.agents[silo] = agent
    except BaseException:
        fleet.close()
        raise
    return fleet
