"""The install bus end to end: kubectl apply a SiloInstall, an agent in the silo does the work over
NATS, and status shows it; failures, crashes of either side, seed-style messages, scrub on delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubehelpers import Kubectl, scratch_namespace
from localcluster import async_wait_for, wait_for

from agents import AgentProcess
from argocd import argocd_health
from fleet import REPO, Hub, bring_up, condition, get, service_url

pytestmark = pytest.mark.e2e

FLEET = ["fleethub-eose-hub.yaml", "siloleaf-ct-fac.yaml", "siloleaf-msclo.yaml", "fleetstream-install.yaml",
         "fleetstream-state.yaml"]
HUB_READY_SECONDS = 240
INSTALL_SECONDS = 180


@pytest.fixture(scope="module")
def bus(operator: Any, kubectl: Kubectl) -> Iterator[Hub]:
    with scratch_namespace(kubectl, "bus") as namespace:
        hub = bring_up(kubectl, namespace, FLEET, ["fleet-install", "fleet-state"], ["ct-fac", "msclo"],
                       HUB_READY_SECONDS)
        yield hub


@pytest.fixture(scope="module")
def ct_fac_agent(bus: Hub, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """ct-fac's agent with the command plan; nothing is run by hand in the silo."""
    agent = AgentProcess.command_plan("ct-fac", service_url(kubectl, bus.namespace, "ct-fac-leaf"),
                                      bus.local_seed("ct-fac"), tmp_path_factory.mktemp("agent-ct-fac"))
    agent.start()
    yield agent
    agent.stop()


def install(kubectl: Kubectl, namespace: str, name: str, silo: str = "ct-fac", **spec: Any) -> None:
    doc = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloInstall", "metadata": {"name": name},
           "spec": {"silo": silo, "version": "v622", **spec}}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def phase_is(kubectl: Kubectl, namespace: str, name: str, *phases: str) -> dict[str, Any] | None:
    obj = get(kubectl, "siloinstall", name, namespace)
    return obj if (obj.get("status") or {}).get("phase") in phases else None


def wait_phase(kubectl: Kubectl, namespace: str, name: str, *phases: str, timeout: float = INSTALL_SECONDS,
               agent: AgentProcess | None = None) -> dict[str, Any]:
    try:
        return wait_for(lambda: phase_is(kubectl, namespace, name, *phases), timeout, f"{name} phase {phases}")
    except AssertionError:
        if agent:
            print(f"--- agent log ---\n{agent.log_tail()}")
        raise


def _event_reasons(kubectl: Kubectl, namespace: str, name: str) -> list[str]:
    events = kubectl.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    return [e["reason"] for e in events["items"]]


def _metric(samples: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for key, v in samples.items() if key.startswith(name + "{") and all(w in key for w in wanted))


async def wait_agent_idle(hub: Hub, silo: str) -> None:
    """Until the agent has acked every request it was given (its consumer has nothing in flight)."""
    nc = await hub.connect_operator()
    try:
        async def idle() -> bool:
            info = await nc.jetstream().consumer_info("FLEET_INSTALL", f"agent-{silo}")
            return info.num_ack_pending == 0 and info.num_pending == 0

        await async_wait_for(idle, 60, f"agent-{silo} idle")
    finally:
        await nc.close()


def test_install_succeeds_with_no_command_in_the_silo(bus: Hub, kubectl: Kubectl, ct_fac_agent: AgentProcess,
                                                      operator: Any) -> None:
    before = operator.metrics()
    install(kubectl, bus.namespace, "ct-fac-v622", params={"pods": "6"})
    obj = wait_phase(kubectl, bus.namespace, "ct-fac-v622", "Succeeded", agent=ct_fac_agent)
    status = obj["status"]
    assert status["result"]["pods"] == 6
    assert status["attempt"] == 1
    assert [h["kind"] for h in status["history"]][:1] == ["request"]
    assert [h["step"] for h in status["history"] if h["kind"] == "progress"] == ["render", "apply", "verify"]
    assert condition(obj, "Ready")["status"] == "True"
    assert argocd_health(obj)[0] == "Healthy"
    row = next(line for line in kubectl("get", "siloinstalls", "-n", bus.namespace).stdout.splitlines()
               if line.startswith("ct-fac-v622"))
    assert row.split()[1:5] == ["ct-fac", "v622", "Succeeded", "done"] and row.split()[5] == "6", row
    wait_for(lambda: condition(get(kubectl, "siloinstall", "ct-fac-v622", bus.namespace), "AgentConnected")
             .get("status") == "True", 30, "AgentConnected from the heartbeat")
    # `kubectl describe` tells the story: the request, the start, the end (the steps are in status.history).
    wait_for(lambda: {"Requested", "Started", "Succeeded"} <= set(_event_reasons(kubectl, bus.namespace,
                                                                                  "ct-fac-v622")),
             30, "the install's Events")
    assert "LeafConnected" in _event_reasons(kubectl, bus.namespace, "ct-fac")
    after = operator.metrics()
    for name, labels in [
        ("fleetlattice_bus_messages_total", {"type": "progress", "outcome": "applied"}),
        ("fleetlattice_bus_messages_total", {"type": "done", "outcome": "applied"}),
        ("fleetlattice_install_phase_transitions_total", {"to_phase": "Succeeded"}),
        ("fleetlattice_install_duration_seconds_count", {"phase": "Succeeded"}),
        ("fleetlattice_reconciles_total", {"kind": "SiloInstall"}),
    ]:
        assert _metric(after, name, **labels) > _metric(before, name, **labels), f"{name}{labels} did not move"
    assert _metric(after, "fleetlattice_hub_connected", namespace=bus.namespace) == 1
    # Consumer lag is read on each stream resync; the agent's consumer shows up within one.
    wait_for(lambda: any(k.startswith("fleetlattice_consumer_num_pending{") and 'consumer="agent-ct-fac"' in k
                         for k in operator.metrics()), 60, "lag of the agent's consumer exported")


def test_failing_plan_reports_step_and_error(bus: Hub, kubectl: Kubectl, ct_fac_agent: AgentProcess) -> None:
    install(kubectl, bus.namespace, "ct-fac-broken", params={"failAt": "verify", "error": "image missing"})
    obj = wait_phase(kubectl, bus.namespace, "ct-fac-broken", "Failed", agent=ct_fac_agent)
    error = obj["status"]["lastError"]
    assert error["step"] == "verify"
    assert "image missing" in error["error"]
    assert error["retryable"] is False
    assert condition(obj, "Ready")["reason"] == "Failed"
    assert argocd_health(obj)[0] == "Degraded"


def test_agent_killed_mid_install_completes_once(bus: Hub, kubectl: Kubectl, ct_fac_agent: AgentProcess,
                                                 tmp_path: Path) -> None:
    release = tmp_path / "release-agent-crash"
    install(kubectl, bus.namespace, "ct-fac-crash", params={"waitFile": str(release), "pods": "4"})
    wait_for(lambda: (get(kubectl, "siloinstall", "ct-fac-crash", bus.namespace).get("status", {})
                      .get("progress") or {}).get("step") == "apply", INSTALL_SECONDS, "install at the apply step")
    ct_fac_agent.kill()
    release.touch()
    ct_fac_agent.start()
    obj = wait_phase(kubectl, bus.namespace, "ct-fac-crash", "Succeeded", agent=ct_fac_agent)
    kinds = [h["kind"] for h in obj["status"]["history"]]
    assert kinds.count("done") == 1, kinds
    assert obj["status"]["attempt"] == 1
    assert obj["status"]["result"]["pods"] == 4


def test_operator_killed_mid_install_still_ends_right(bus: Hub, kubectl: Kubectl, ct_fac_agent: AgentProcess,
                                                      operator: Any, tmp_path: Path) -> None:
    release = tmp_path / "release-operator-crash"
    install(kubectl, bus.namespace, "ct-fac-opcrash", params={"waitFile": str(release), "pods": "5"})
    wait_phase(kubectl, bus.namespace, "ct-fac-opcrash", "InProgress", agent=ct_fac_agent)
    operator.stop(9)
    release.touch()
    operator.start()
    obj = wait_phase(kubectl, bus.namespace, "ct-fac-opcrash", "Succeeded", agent=ct_fac_agent)
    assert obj["status"]["result"]["pods"] == 5
    assert obj["status"]["attempt"] == 1


async def test_seed_style_done_completes_the_active_install(bus: Hub, kubectl: Kubectl,
                                                            ct_fac_agent: AgentProcess, tmp_path: Path) -> None:
    release = tmp_path / "release-seed"
    install(kubectl, bus.namespace, "ct-fac-seed", params={"waitFile": str(release)})
    wait_phase(kubectl, bus.namespace, "ct-fac-seed", "InProgress", agent=ct_fac_agent)
    nc = await bus.connect(bus.silo_seed("ct-fac"), inbox_prefix=b"_INBOX_ct-fac")
    try:
        await nc.publish("fleet.install.ct-fac.done", b'{"pods":6,"health":"ok","gamma1":14.134}')
        await nc.flush()
    finally:
        await nc.close()
    obj = wait_phase(kubectl, bus.namespace, "ct-fac-seed", "Succeeded")
    release.touch()  # the agent's own, now late, report must not change the result
    assert obj["status"]["result"]["pods"] == 6
    assert obj["status"]["result"]["details"] == {"gamma1": 14.134}
    await wait_agent_idle(bus, "ct-fac")
    assert get(kubectl, "siloinstall", "ct-fac-seed", bus.namespace)["status"]["result"]["pods"] == 6


def _by_hand(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    return kubectl.json("get", "siloinstalls", "-n", namespace, "-l", "fleet.lattice.dev/origin=bus")["items"]


async def test_the_seeds_raw_bus_commands_work_as_written(bus: Hub, kubectl: Kubectl,
                                                          ct_fac_agent: AgentProcess) -> None:
    """Seed 000's `nats pub fleet.install.ct-fac.request '{"v":"v622"}'` (a plain publish, no requestId) is
    performed and recorded as a SiloInstall; what the agent cannot perform is answered `failed` on the bus;
    a raw scrub scrubs. `nats sub 'fleet.install.ct-fac.>'` sees every answer."""
    await wait_agent_idle(bus, "ct-fac")
    nc = await bus.connect_operator()
    try:
        answers = await nc.subscribe("fleet.install.ct-fac.>")
        await nc.publish("fleet.install.ct-fac.request", b'{"version":"v622","pods":"4","ns":"eose-entry"}')
        await nc.flush()

        def recorded() -> dict[str, Any] | None:
            done = [i for i in _by_hand(kubectl, bus.namespace) if (i.get("status") or {}).get("phase") == "Succeeded"]
            return done[0] if done else None

        obj = wait_for(recorded, INSTALL_SECONDS, "the request published by hand recorded and Succeeded")
        rid = obj["metadata"]["annotations"]["fleet.lattice.dev/request-id"]
        assert obj["metadata"]["name"] == f"ct-fac-{rid}"
        spec = obj["spec"]
        assert (spec["silo"], spec["version"], spec["params"]) == ("ct-fac", "v622", {"pods": "4", "ns": "eose-entry"})
        assert (obj["status"]["requestId"], obj["status"]["result"]["pods"]) == (rid, 4)
        history = obj["status"]["history"]
        assert history[0]["kind"] == "request" and rid in history[0]["message"]
        assert "accepted" in [h.get("step") for h in history if h["kind"] == "progress"]

        await nc.publish("fleet.install.ct-fac.request", b"not json")
        await nc.publish("fleet.install.ct-fac.request", b'{"ns":"eose-entry"}')
        await nc.publish("fleet.install.ct-fac.scrub", b'{"reason":"engagement-complete"}')
        await nc.flush()

        async def answered() -> bool:
            while True:
                msg = await answers.next_msg(timeout=30)
                seen.append((msg.subject.rsplit(".", 1)[-1], json.loads(msg.data)))
                if seen[-1][0] == "scrubbed":
                    return True

        seen: list[tuple[str, dict[str, Any]]] = []
        await async_wait_for(answered, 90, "the agent's answers to the raw commands")
        failures = [body["error"] for kind, body in seen if kind == "failed"]
        assert any("request is not JSON" in error for error in failures), seen
        assert any("request has no version" in error for error in failures), seen
        assert seen[-1][1]["requestId"].startswith("bus-")
    finally:
        await nc.close()
    assert len(_by_hand(kubectl, bus.namespace)) == 1, "refused requests are answered, not recorded"


async def test_another_silo_cannot_complete_the_install(bus: Hub, kubectl: Kubectl, ct_fac_agent: AgentProcess,
                                                        tmp_path: Path) -> None:
    release = tmp_path / "release-guarded"
    install(kubectl, bus.namespace, "ct-fac-guarded", params={"waitFile": str(release)})
    obj = wait_phase(kubectl, bus.namespace, "ct-fac-guarded", "InProgress", agent=ct_fac_agent)
    rid = obj["status"]["requestId"]
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    nc = await bus.connect(bus.silo_seed("msclo"), error_cb=on_error, inbox_prefix=b"_INBOX_msclo")
    try:
        await nc.publish("fleet.install.ct-fac.done", json.dumps({"requestId": rid, "pods": 1}).encode())
        await nc.publish("fleet.install.msclo.done", json.dumps({"requestId": rid, "pods": 1}).encode())
        await nc.flush()
        async def violated() -> bool:  # the server's -ERR reaches the error callback asynchronously
            return any("permissions violation" in str(e).lower() for e in errors)

        await async_wait_for(violated, 10, "a permissions violation reported to msclo", interval=0.1)
    finally:
        await nc.close()
    # The forged report on msclo's own subject reaches the operator and must be refused: the install
    # stays InProgress while a later genuine report from ct-fac still applies.
    before = obj["metadata"]["resourceVersion"]
    nc = await bus.connect(bus.silo_seed("ct-fac"), inbox_prefix=b"_INBOX_ct-fac")
    try:
        await nc.publish("fleet.install.ct-fac.progress", json.dumps(
            {"requestId": rid, "step": "marker", "index": 2, "total": 3}).encode())
        await nc.flush()
    finally:
        await nc.close()
    obj = wait_for(lambda: (get(kubectl, "siloinstall", "ct-fac-guarded", bus.namespace)["status"].get("progress")
                            or {}).get("step") == "marker" and get(kubectl, "siloinstall", "ct-fac-guarded",
                                                                   bus.namespace), 60, "genuine report applied")
    assert obj["metadata"]["resourceVersion"] != before
    assert obj["status"]["phase"] == "InProgress"
    assert "done" not in [h["kind"] for h in obj["status"]["history"]]
    release.touch()
    wait_phase(kubectl, bus.namespace, "ct-fac-guarded", "Succeeded", agent=ct_fac_agent)


def test_delete_scrubs_then_goes(bus: Hub, kubectl: Kubectl, ct_fac_agent: AgentProcess) -> None:
    install(kubectl, bus.namespace, "ct-fac-scrub", scrubOnDelete=True)
    wait_phase(kubectl, bus.namespace, "ct-fac-scrub", "Succeeded", agent=ct_fac_agent)
    kubectl("delete", "siloinstall", "ct-fac-scrub", "-n", bus.namespace, "--wait=false")
    wait_for(lambda: kubectl("get", "siloinstall", "ct-fac-scrub", "-n", bus.namespace, check=False).returncode != 0,
             120, "SiloInstall gone after scrub")
    events = kubectl("get", "events", "-n", bus.namespace, "--field-selector",
                     "involvedObject.name=ct-fac-scrub", "-o", "json")
    reasons = [e["reason"] for e in json.loads(events.stdout)["items"]]
    assert "ScrubRequested" in reasons
    assert "ScrubTimedOut" not in reasons


def test_builtin_plan_applies_manifests_and_reports_pods(bus: Hub, kubectl: Kubectl, kubeconfig: Path,
                                                         tmp_path: Path) -> None:
    target = f"{bus.namespace}-entry"
    agent = AgentProcess.builtin_plan("msclo", service_url(kubectl, bus.namespace, "msclo-leaf"),
                                      bus.local_seed("msclo"), tmp_path, REPO / "examples" / "agent" / "ct-fac",
                                      kubeconfig, namespaces=(target,))
    agent.start()
    try:
        install(kubectl, bus.namespace, "msclo-v622", silo="msclo", params={"ns": target, "replicas": "2"},
                scrubOnDelete=True)
        obj = wait_phase(kubectl, bus.namespace, "msclo-v622", "Succeeded", agent=agent)
        assert obj["status"]["result"]["pods"] == 2
        deployment = kubectl.json("get", "deployment", "pemos-portal", "-n", target)
        assert deployment["metadata"]["labels"]["fleet.lattice.dev/silo"] == "msclo"
        kubectl("delete", "siloinstall", "msclo-v622", "-n", bus.namespace, "--wait=false")
        wait_for(lambda: kubectl("get", "namespace", target, check=False).returncode != 0, 180,
                 "scrub removed what the install applied")
    finally:
        agent.stop()
        kubectl("delete", "namespace", target, "--ignore-not-found", "--wait=false")


def test_builtin_plan_refuses_what_the_silo_did_not_declare_or_create(bus: Hub, kubectl: Kubectl, kubeconfig: Path,
                                                                      tmp_path: Path) -> None:
    """params.ns naming a namespace the silo never declared, or one that exists and is someone else's: the
    install fails saying why, and the scrub of that failed install deletes nothing of theirs."""
    taken = f"{bus.namespace}-taken"
    kubectl("create", "namespace", taken)
    agent = AgentProcess.builtin_plan("msclo", service_url(kubectl, bus.namespace, "msclo-leaf"),
                                      bus.local_seed("msclo"), tmp_path, REPO / "examples" / "agent" / "ct-fac",
                                      kubeconfig, namespaces=(taken,))
    agent.start()
    try:
        install(kubectl, bus.namespace, "msclo-system", silo="msclo", params={"ns": "kube-system"})
        obj = wait_phase(kubectl, bus.namespace, "msclo-system", "Failed", agent=agent)
        assert "'kube-system' comes from the request and is not one this silo's agent may touch" in \
            obj["status"]["lastError"]["error"]
        install(kubectl, bus.namespace, "msclo-taken", silo="msclo", params={"ns": taken}, scrubOnDelete=True)
        obj = wait_phase(kubectl, bus.namespace, "msclo-taken", "Failed", agent=agent)
        assert f"Namespace {taken} exists and was not created by silo msclo's agent" in \
            obj["status"]["lastError"]["error"]
        kubectl("delete", "siloinstall", "msclo-taken", "-n", bus.namespace, "--wait=true", "--timeout=120s")
        namespace = kubectl.json("get", "namespace", taken)
        assert namespace["status"]["phase"] == "Active"
        assert "fleet.lattice.dev/silo" not in (namespace["metadata"].get("labels") or {})
    finally:
        agent.stop()
        kubectl("delete", "namespace", taken, "--ignore-not-found", "--wait=false")
