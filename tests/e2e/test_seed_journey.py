"""Seed 000's own commands, run as the seed writes them with the seed's own clients (the nats CLI built from
natscli's Go module, nats.js from npm), against a hub and ct-fac's in-cluster, NKey-authenticated leaf: the
mrcp-agent snippet lands its state and event, a silo reads its own state (and nobody else's), and the raw
install bus commands install, report and scrub."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubehelpers import Kubectl, scratch_namespace
from localcluster import async_wait_for, wait_for

from agents import AgentProcess
from fleet import EXAMPLES, REPO, Hub, bring_up, get, is_ready, service_url
from natsclients import NatsCli, NatsSub, NodeRunner, SubMessage

pytestmark = pytest.mark.e2e

FLEET = ["fleethub-eose-hub.yaml", "siloleaf-ct-fac.yaml", "siloleaf-msclo.yaml", "fleetstream-install.yaml",
         "fleetstream-state.yaml", "fleetstream-events.yaml", "fleetuser-eose-installer.yaml"]
# The EOSE side's identity (examples/fleetuser-eose-installer.yaml): Observer and Installer.
HUB_USER = "eose-installer"
SNIPPET = Path(__file__).parent / "js" / "mrcp-agent-v2.js"
# The host reaches the leaf by its Service's ClusterIP, not by the cluster DNS name the snippet dials.
SNIPPET_URL = "nats://ct-fac-leaf.eose-entry.svc.cluster.local:4222"
SEED_NAMESPACE = "eose-entry"  # where the seed's install lands (its `"ns":"eose-entry"`, the plan's default)
INSTALL_SECONDS = 180
# Seed 000's Install Bus block ("From any terminal with nats CLI") and its short form, word for word.
REQUEST = ("nats pub fleet.install.ct-fac.request "
           """'{"version":"v622","acr":"ctfacentry.azurecr.io","ns":"eose-entry"}'""")
SHORT_REQUEST = """nats pub fleet.install.ct-fac.request '{"v":"v622"}'"""
WATCH = "nats sub 'fleet.install.ct-fac.>'"
KV_WATCH = "nats kv watch FLEET_STATE"
# README's reads of a silo's own state, as ct-fac (at the hub; through its leaf).
SILO_KV_GET = "nats --inbox-prefix _INBOX_ct-fac kv get FLEET_STATE ct-fac"
SILO_KV_GET_AT_LEAF = "nats --inbox-prefix _INBOX_ct-fac --js-domain fleet kv get FLEET_STATE ct-fac"
SCRUB = """nats pub fleet.install.ct-fac.scrub '{"reason":"engagement-complete"}'"""


@pytest.fixture(scope="module")
def journey(operator: Any, kubectl: Kubectl) -> Iterator[Hub]:
    with scratch_namespace(kubectl, "seed") as namespace:
        yield bring_up(kubectl, namespace, FLEET, ["fleet-install", "fleet-state", "fleet-events"], ["ct-fac", "msclo"])


@pytest.fixture(scope="module")
def seed_files(journey: Hub, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The NKey seed files README.md has a user write (`kubectl get secret ... | base64 -d > ct-fac.nk`)."""
    folder = tmp_path_factory.mktemp("nkeys")
    seeds = {"ct-fac.nk": journey.silo_seed("ct-fac"),
             "ct-fac-local.nk": journey.local_seed("ct-fac")}
    for name, seed in seeds.items():
        (folder / name).write_text(seed)
        (folder / name).chmod(0o600)
    return {name: folder / name for name in seeds}


@pytest.fixture(scope="module")
def hub_user_creds(journey: Hub, kubectl: Kubectl, kubeconfig: Path, nats_cli: NatsCli) -> NatsCli:
    """The EOSE side's identity at the hub: FleetUser eose-installer's nats CLI context, written by
    `fleetlattice user context` as README.md has a user do (never the operator's own NKey)."""
    wait_for(lambda: is_ready(kubectl, "fleetuser", HUB_USER, journey.namespace), 120, f"FleetUser {HUB_USER} Ready")
    # Its key is in the config the servers loaded: the hub is Ready again after the reload.
    wait_for(lambda: is_ready(kubectl, "fleethub", journey.name, journey.namespace), 120, "hub Ready with the user")
    subprocess.run([sys.executable, "-m", "fleetlattice.cli", "user", "context", HUB_USER, "-n", journey.namespace,
                    "--server", journey.url, "--nats-config", str(nats_cli.config_home / "nats"),
                    "--kubeconfig", str(kubeconfig)], check=True, capture_output=True, timeout=60)
    return nats_cli.signed_in(context=HUB_USER)


@pytest.fixture(scope="module")
def ct_fac_agent(journey: Hub, kubectl: Kubectl, kubeconfig: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """ct-fac's agent with the built-in plan: the seed's install is the pemos-portal Deployment in eose-entry."""
    assert kubectl("get", "namespace", SEED_NAMESPACE, check=False).returncode != 0, \
        f"namespace {SEED_NAMESPACE} exists already; the seed's install would (rightly) refuse to take it over"
    agent = AgentProcess.builtin_plan("ct-fac", service_url(kubectl, journey.namespace, "ct-fac-leaf"),
                                      journey.local_seed("ct-fac"), tmp_path_factory.mktemp("agent-ct-fac"),
                                      EXAMPLES / "agent" / "ct-fac", kubeconfig)
    agent.start()
    # Ready once bound to the consumer the operator creates for it (the agent backs off up to 30 s meanwhile).
    wait_for(lambda: "bound to consumer" in agent.log_path.read_text(), 120, "agent ct-fac bound to its consumer")
    yield agent
    agent.stop()
    print(f"\n--- agent ct-fac log tail ---\n{agent.log_tail(40)}", file=sys.stderr)
    kubectl("delete", "namespace", SEED_NAMESPACE, "--ignore-not-found", "--wait=false")


def _readme_block(after: str, lang: str) -> list[str]:
    """The lines of README.md's first ```lang block after the line containing `after`."""
    text = (REPO / "README.md").read_text()
    start = text.index(after)
    body = text[text.index(f"```{lang}\n", start) + len(lang) + 4:]
    return body[:body.index("```")].strip().splitlines()


async def _kv_state(hub: Hub, key: str) -> dict[str, Any]:
    nc = await hub.connect_operator()
    try:
        kv = await nc.jetstream().key_value("FLEET_STATE")
        entry = await kv.get(key)
        assert entry.value is not None
        return {"revision": entry.revision, **json.loads(entry.value)}
    finally:
        await nc.close()


async def test_the_seeds_mrcp_agent_snippet_lands_its_state_and_event(
        journey: Hub, kubectl: Kubectl, node: NodeRunner, ct_fac_agent: AgentProcess, tmp_path: Path) -> None:
    """nats.js as the seed writes it, with README's lines for the silo's credential, through ct-fac's leaf:
    its state is key `ct-fac` of FLEET_STATE (not overwritten by the agent's heartbeat, which is `ct-fac.agent`)
    and its event is on FLEET_EVENTS, as read at the hub."""
    snippet = SNIPPET.read_text()
    readme = _readme_block("The seed's mrcp-agent (nats.js) needs", "js")
    assert all(line in snippet.splitlines() for line in readme), "the snippet and README.md's lines differ"
    script = tmp_path / "mrcp-agent.js"
    script.write_text(snippet.replace(SNIPPET_URL, service_url(kubectl, journey.namespace, "ct-fac-leaf")))
    event = f"journey-{uuid.uuid4().hex[:8]}"
    node.run(script, {"SILO": "ct-fac", "EVENT_TYPE": event, "PODS": "6", "HEALTH": "ok",
                      "EVENT_DATA": json.dumps({"portal": "v622"}),
                      "FLEET_NKEY_SEED": journey.local_seed("ct-fac")}).ok()

    async def landed() -> dict[str, Any] | None:
        state = await _kv_state(journey, "ct-fac")
        return state if state.get("pods") == 6 else None

    state = await async_wait_for(landed, 30, "the snippet's state as key ct-fac of FLEET_STATE")
    assert (state["health"], state["gamma1"]) == ("ok", 14.134725141734693)
    nc = await journey.connect_operator()
    try:
        msg = await async_wait_for(lambda: nc.jetstream().get_last_msg("FLEET_EVENTS", f"fleet.events.ct-fac.{event}"),
                                   30, "the snippet's event on FLEET_EVENTS")
        assert json.loads(msg.data) == {"silo": "ct-fac", "event": event, "data": {"portal": "v622"},
                                        "gamma1": 14.134725141734693}
    finally:
        await nc.close()
    # The agent's heartbeat (every 2 s here) is its own key: one written after the snippet's state leaves it be.
    await async_wait_for(lambda: _newer(journey, "ct-fac.agent", state["revision"]), 30,
                         "a heartbeat after the snippet's publish")
    assert (await _kv_state(journey, "ct-fac")) == state


async def _newer(hub: Hub, key: str, revision: int) -> bool:
    return (await _kv_state(hub, key))["revision"] > revision


async def _publish_state(hub: Hub, silo: str, state: dict[str, Any]) -> None:
    nc = await hub.connect(hub.silo_seed(silo), inbox_prefix=f"_INBOX_{silo}".encode())
    try:
        await nc.publish(f"fleet.state.{silo}", json.dumps(state).encode())
        await nc.flush()
    finally:
        await nc.close()


async def test_a_silo_reads_its_own_state_with_the_cli_and_never_anothers(
        journey: Hub, kubectl: Kubectl, nats_cli: NatsCli, seed_files: dict[str, Path]) -> None:
    """README's `nats kv get FLEET_STATE ct-fac` as ct-fac: at the hub with its NKey, and through its leaf with
    the local NKey and `--js-domain fleet`; msclo's key is refused both ways. A silo's replies come only on
    `_INBOX_ct-fac.…`, so the CLI needs `--inbox-prefix _INBOX_ct-fac`: without it, it is refused."""
    mark = uuid.uuid4().hex[:8]
    for silo in ("ct-fac", "msclo"):
        await _publish_state(journey, silo, {"pods": 6, "health": "ok", "mark": f"{silo}-{mark}"})
    await async_wait_for(lambda: _marked(journey, "msclo", f"msclo-{mark}"), 30, "msclo's state stored")
    await async_wait_for(lambda: _marked(journey, "ct-fac", f"ct-fac-{mark}"), 30, "ct-fac's state stored")
    at_hub = nats_cli.signed_in(server=journey.url, nkey=seed_files["ct-fac.nk"])
    at_leaf = nats_cli.signed_in(server=service_url(kubectl, journey.namespace, "ct-fac-leaf"),
                                 nkey=seed_files["ct-fac-local.nk"])
    # What each refusal looks like: the hub says why; behind the leaf, the hub drops what the silo may not
    # send, so the CLI hears nothing (a refused read is "no responders", a refused inbox a timeout).
    for cli, command, refused, no_inbox in (
        (at_hub, SILO_KV_GET,
         'Permissions Violation for Publish to "$JS.API.DIRECT.GET.KV_FLEET_STATE.$KV.FLEET_STATE.msclo"',
         'Permissions Violation for Subscription to "_INBOX.'),
        (at_leaf, SILO_KV_GET_AT_LEAF, "no responders available for request", "context deadline exceeded"),
    ):
        own = cli.run(command).ok()
        assert f"ct-fac-{mark}" in own.stdout, own
        other = cli.run(command.removesuffix(" ct-fac") + " msclo")
        assert other.rc != 0 and refused in other.stderr and f"msclo-{mark}" not in other.stdout, other
        bare = cli.run(command.replace("--inbox-prefix _INBOX_ct-fac ", ""))
        assert bare.rc != 0 and no_inbox in bare.stderr, bare


async def _marked(hub: Hub, key: str, mark: str) -> bool:
    return (await _kv_state(hub, key)).get("mark") == mark


def test_kv_watch_shows_silo_state_as_it_changes(journey: Hub, hub_user_creds: NatsCli, nats_cli: NatsCli,
                                                 seed_files: dict[str, Path]) -> None:
    """The seed's `nats kv watch FLEET_STATE` from the EOSE side, while ct-fac publishes its state with
    README's `nats --nkey ct-fac.nk pub fleet.state.ct-fac ...`."""
    silo = nats_cli.signed_in(server=journey.url, nkey=seed_files["ct-fac.nk"])
    first, second = (f'{{"pods":{n},"health":"ok","mark":"{uuid.uuid4().hex[:8]}"}}' for n in (5, 6))
    silo.run(f"nats pub fleet.state.ct-fac '{first}'").ok()
    with hub_user_creds.sub(KV_WATCH) as watch:
        # The watcher shows each key's last value first; once `first` is shown, it is live.
        watch.wait_line(lambda line: "ct-fac" in line and first in line, 30, "the current ct-fac state")
        silo.run(f"nats pub fleet.state.ct-fac '{second}'").ok()
        line = watch.wait_line(lambda line: second in line, 30, "the new ct-fac state, pushed")
    assert re.search(r"PUT FLEET_STATE > ct-fac: ", line), line


def _answer(sub: NatsSub, kind: str, rid: str | None, timeout: float, what: str) -> SubMessage:
    """The agent's report `kind` on fleet.install.ct-fac.<kind> (for requestId `rid`, or any if None)."""
    def match(m: SubMessage) -> bool:
        if m.subject != f"fleet.install.ct-fac.{kind}":
            return False
        body = m.json()
        return rid is None or body.get("requestId") == rid

    return sub.wait_message(match, timeout, what)


def _succeeded(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    obj = get(kubectl, "siloinstall", name, namespace)
    return obj if (obj.get("status") or {}).get("phase") == "Succeeded" else None


def test_the_seeds_install_bus_commands_install_report_and_scrub(
        journey: Hub, kubectl: Kubectl, hub_user_creds: NatsCli, ct_fac_agent: AgentProcess) -> None:
    """Seed 000's Install Bus block, verbatim: the long and the short request each install the seed's portal in
    eose-entry, `nats sub 'fleet.install.ct-fac.>'` shows accepted, progress and done, `kubectl get siloinstalls`
    shows each bus-originated install, and the raw scrub removes what was installed."""
    subject = "fleet.install.ct-fac.>"
    before = journey.subscribers(subject)
    with hub_user_creds.sub(WATCH) as sub:
        wait_for(lambda: journey.subscribers(subject) > before, 30, "nats sub subscribed at the hub")
        installs: dict[str, str] = {}
        for command, params in ((REQUEST, {"acr": "ctfacentry.azurecr.io", "ns": "eose-entry"}), (SHORT_REQUEST, {})):
            published = time.monotonic()
            hub_user_creds.run(command).ok()
            accepted = sub.wait_message(lambda m: m.subject.endswith(".progress") and m.json().get("step") == "accepted"
                                        and m.json()["requestId"] not in installs, 10, f"accepted for {command}")
            print(f"accepted {time.monotonic() - published:.2f}s after `{command}` returned")
            rid = accepted.json()["requestId"]
            done = _answer(sub, "done", rid, INSTALL_SECONDS, f"done for {command}").json()
            assert (done["version"], done["pods"], done["health"]) == ("v622", 2, "ok"), done
            reports = [(m.subject.rsplit(".", 1)[-1], m.json().get("step")) for m in sub.messages()
                       if m.json().get("requestId") == rid]
            assert reports[0] == ("progress", "accepted") and {k for k, _ in reports[1:-1]} == {"progress"}, reports
            name = installs[rid] = f"ct-fac-{rid}"
            obj = wait_for(lambda n=name: _succeeded(kubectl, journey.namespace, n), 60, f"SiloInstall {name}")
            assert obj["metadata"]["labels"]["fleet.lattice.dev/origin"] == "bus"
            assert (obj["spec"]["version"], obj["spec"].get("params", {})) == ("v622", params), obj["spec"]
        table = kubectl("get", "siloinstalls", "-n", journey.namespace).stdout
        for name in installs.values():
            row = next((line.split() for line in table.splitlines() if line.startswith(name + " ")), None)
            assert row is not None and row[1:5] == ["ct-fac", "v622", "Succeeded", "done"], table
        deployment = kubectl.json("get", "deployment", "pemos-portal", "-n", SEED_NAMESPACE)
        assert deployment["metadata"]["labels"]["fleet.lattice.dev/silo"] == "ct-fac"

        hub_user_creds.run(SCRUB).ok()
        _answer(sub, "scrubbed", None, INSTALL_SECONDS, "scrubbed for the raw scrub")
        wait_for(lambda: kubectl("get", "namespace", SEED_NAMESPACE, check=False).returncode != 0, 180,
                 f"the scrub removed namespace {SEED_NAMESPACE} and the portal in it")
        assert not [m for m in sub.messages() if m.subject.endswith(".failed")], sub.output()
    print(kubectl("get", "siloinstalls", "-n", journey.namespace, "-o", "wide").stdout)
