"""Many silos installing at once, each through its own real parts: an in-cluster leaf that signs in to the
hub with the silo's NKey, and a real `fleetlattice agent` process that signs in to that leaf with the
silo's local NKey. With bcrypt credentials 97 of 100 concurrent agents never got a request
(bench/findings/bcrypt-connect-handshake.md); this is the fleet-size check that they all finish now.
The timings are the bench's business (bench/ scale scenario); this only asserts that every install ends
Succeeded with its own report."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubehelpers import Kubectl, scratch_namespace
from localcluster import wait_for

from agents import AgentProcess
from fleet import EXAMPLES, Hub, condition, get, is_ready, service_url

pytestmark = pytest.mark.e2e

# 20 by default (the issue's floor for this 2-core machine); FLEET_E2E_AGENTS=100 for the full size by hand.
AGENTS = int(os.environ.get("FLEET_E2E_AGENTS", "20"))
SILOS = [f"silo-{i:03d}" for i in range(AGENTS)]
STREAMS = ("fleetstream-install.yaml", "fleetstream-state.yaml")


def _silo_leaf(silo: str, hub: str) -> dict[str, Any]:
    return {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf", "metadata": {"name": silo},
            "spec": {"silo": silo, "hub": hub, "leaf": {"mode": "InCluster"}}}


def _connected(kubectl: Kubectl, namespace: str) -> bool:
    """True once every leaf is connected; until then raises with what each of the others' Ready says, which a
    timed-out wait reports."""
    leaves = kubectl.json("get", "siloleaves", "-n", namespace)["items"]
    waiting = {leaf["metadata"]["name"]: condition(leaf, "Ready").get("reason", "no Ready condition")
               for leaf in leaves if not (leaf.get("status") or {}).get("connected")}
    if waiting or len(leaves) < len(SILOS):
        raise AssertionError(f"{len(leaves)} SiloLeaves, not connected: {waiting}")
    return True


@pytest.fixture(scope="module")
def fleet(operator: Any, kubectl: Kubectl) -> Iterator[Hub]:
    with scratch_namespace(kubectl, "agents") as namespace:
        for name in ("fleethub-eose-hub.yaml", *STREAMS):
            kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / name))
        hub = Hub(kubectl, namespace)
        kubectl("apply", "-n", namespace, "-f", "-",
                input="\n---\n".join(json.dumps(_silo_leaf(silo, hub.name)) for silo in SILOS))
        wait_for(lambda: is_ready(kubectl, "fleethub", hub.name, namespace), 240, "hub Ready")
        for stream in ("fleet-install", "fleet-state"):
            wait_for(lambda s=stream: is_ready(kubectl, "fleetstream", s, namespace), 120, f"{stream} Ready")
        wait_for(lambda: _connected(kubectl, namespace), 600, f"all {len(SILOS)} leaves connected")
        yield hub


@pytest.fixture(scope="module")
def agents(fleet: Hub, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProcess]]:
    started = []
    try:
        for silo in SILOS:
            agent = AgentProcess.command_plan(silo, service_url(kubectl, fleet.namespace, f"{silo}-leaf"),
                                              fleet.local_seed(silo), tmp_path_factory.mktemp(f"agent-{silo}"))
            agent.start()
            started.append(agent)
        yield started
    finally:
        for agent in started:
            agent.stop()


def _phases(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    return {item["metadata"]["name"]: (item.get("status") or {}).get("phase", "")
            for item in kubectl.json("get", "siloinstalls", "-n", namespace)["items"]}


def test_every_silo_installs_at_once_through_its_own_leaf_and_agent(
        fleet: Hub, kubectl: Kubectl, agents: list[AgentProcess]) -> None:
    # Each silo reports a different pod count: a report applied to the wrong install would show.
    installs = [{"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloInstall",
                 "metadata": {"name": f"{silo}-v622"},
                 "spec": {"silo": silo, "version": "v622", "params": {"pods": str(i + 1)}}}
                for i, silo in enumerate(SILOS)]
    started = time.monotonic()
    kubectl("apply", "-n", fleet.namespace, "-f", "-", input="\n---\n".join(json.dumps(i) for i in installs))
    try:
        wait_for(lambda: set(_phases(kubectl, fleet.namespace).values()) == {"Succeeded"}, 600,
                 f"all {len(SILOS)} installs Succeeded")
    except AssertionError:
        stuck = {n: p for n, p in _phases(kubectl, fleet.namespace).items() if p != "Succeeded"}
        for agent in agents:
            if f"{agent.silo}-v622" in stuck:
                print(f"--- agent {agent.silo} ({stuck[f'{agent.silo}-v622']}) ---\n{agent.log_tail(20)}")
        raise
    print(f"\n{len(SILOS)} concurrent installs Succeeded in {time.monotonic() - started:.1f}s")
    for i, silo in enumerate(SILOS):
        result = get(kubectl, "siloinstall", f"{silo}-v622", fleet.namespace)["status"]["result"]
        assert (result["version"], result["pods"]) == ("v622", i + 1), (silo, result)


def test_agents_are_the_only_clients_their_leaves_admit(fleet: Hub, kubectl: Kubectl) -> None:
    """Every leaf's ConfigMap names a different local key: no silo's agent credential opens another's leaf."""
    keys = {kubectl.json("get", "configmap", f"{silo}-leaf-config", "-n", fleet.namespace)["data"]["leaf.conf"]
            .split('nkey: "', 1)[1].split('"', 1)[0] for silo in SILOS}
    assert len(keys) == len(SILOS)
