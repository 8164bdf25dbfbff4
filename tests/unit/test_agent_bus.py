"""The silo agent against real servers: a hub rendered with silos ct-fac and msclo, ct-fac's rendered
leaf, and `fleetlattice agent` as a subprocess on that leaf with the `command` plan.

The hub side plays the operator: it creates FLEET_INSTALL (work queue) with the agent's durable
consumer, the FLEET_STATE bucket, publishes requests, and reads the agent's reports with a consumer of
its own. Everything the agent does crosses the leafnode under the silo's hub permissions, so these
tests also prove the agent needs no more than silo_permissions grants: nats-server 2.15.1 drops a denied
leafnode message silently (no error to the client, nothing in either server's log), so a missing
permission shows here as a report or an ack that never arrives."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from fleetlattice.agent.ledger import Ledger
from fleetlattice.api.bus import INSTALL_STREAM, STATE_BUCKET, agent_durable, agent_state_key
from fleetlattice.api.defaults import LOCAL_SEED_ENV
from fleetlattice.api.fleetstream import FleetStreamSpec
from fleetlattice.api.messages import InstallRequest, ScrubRequest, SiloState
from fleetlattice.render.stream import render_consumer_configs, render_stream_config
from nats_processes import NatsProcess, eventually, free_port, leaf_interest
from render_fixtures import hub_users, local_credential, running_hub, running_leaf

SILO = "ct-fac"
OBSERVER = "observer"
REPORT_KINDS = ("progress", "done", "failed", "scrubbed")
# Short, so a request abandoned by a killed agent comes back quickly; the agent's in-progress beats
# (every ack_wait/3) must keep a running install from being redelivered all the same.
ACK_WAIT = "2s"
# Waits that include starting an agent process: generous, since a busy CI machine starts Python slowly;
# every wait ends as soon as its condition holds.
WAIT = 60.0

SCRIPT = """
import json, os, pathlib, sys, time

work = pathlib.Path(os.environ["AGENT_TEST_DIR"])
request = json.load(sys.stdin)
if os.environ.get("FLEET_SCRUB") == "1":
    (work / f"scrubbed-{request['requestId']}").write_text(os.environ["FLEET_VERSION"])
    sys.exit(0)
with (work / "runs").open("a") as runs:
    runs.write(request["requestId"] + "\\n")
params = request["params"]


def say(**line):
    print(json.dumps(line), flush=True)


env = " ".join(os.environ[k] for k in ("FLEET_SILO", "FLEET_VERSION", "FLEET_REQUEST_ID"))
say(step="prepare", index=1, total=3, message=env)
print("pulling images", flush=True)
if "gate" in params:
    say(step="wait", index=2, total=3, message="waiting for the gate")
    while not pathlib.Path(params["gate"]).exists():
        time.sleep(0.05)
if "fail" in params:
    print("quota exceeded", file=sys.stderr)
    sys.exit(int(params["fail"]))
say(step="verify", index=3, total=3, message="verified", result={"pods": 6, "health": "ok", "gamma1": 14.134})
"""


@dataclass
class Report:
    kind: str
    body: dict[str, Any]
    msg_id: str


class AgentProcess:
    """`fleetlattice agent` on the silo's leaf, with the test script as its command plan."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> AgentProcess:
        with self.log.open("a") as out:
            self.process = await asyncio.create_subprocess_exec(*self.argv, env=self.env, stdout=out, stderr=out)
        return self

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> int:
        """SIGTERM, as Kubernetes stops a pod; a clean agent exits promptly with 0."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), WAIT)


@dataclass
class Bus:
    leaf: NatsProcess
    leaf_port: int
    nc: Client
    js: JetStreamContext
    work: Path
    agents: list[AgentProcess] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)

    async def create_install_stream(self) -> None:
        """FLEET_INSTALL with the agent's consumer, as the operator makes them, plus the test's observer."""
        spec = FleetStreamSpec.model_validate(
            {
                "hub": "eose-hub",
                "name": INSTALL_STREAM,
                "subjects": ["fleet.install.>"],
                "retention": "WorkQueue",
                "duplicateWindow": "10m",
                "consumers": [
                    {
                        "name": agent_durable(SILO),
                        "filterSubjects": [f"fleet.install.{SILO}.request", f"fleet.install.{SILO}.scrub"],
                        "ackWait": ACK_WAIT,
                        "maxDeliver": 5,
                    },
                    {"name": OBSERVER, "filterSubjects": [f"fleet.install.{SILO}.{k}" for k in REPORT_KINDS]},
                ],
            }
        )
        await self.js.add_stream(render_stream_config(spec))
        for consumer in render_consumer_configs(spec):
            await self.js.add_consumer(INSTALL_STREAM, consumer)

    async def agent(self) -> AgentProcess:
        argv = [sys.executable, "-m", "fleetlattice.cli", "agent", "--silo", SILO,
                "--nats", f"nats://127.0.0.1:{self.leaf_port}", "--plan", "command",
                "--command", f"{sys.executable} {self.work / 'install.py'}",
                "--heartbeat", "0.5", "--state-dir", str(self.work / "state")]  # fmt: skip
        env = {**os.environ, "AGENT_TEST_DIR": str(self.work), LOCAL_SEED_ENV: local_credential(SILO).seed}
        agent = await AgentProcess(argv, env, self.work / "agent.log").start()
        self.agents.append(agent)
        return agent

    async def request(self, request_id: str, deadline: timedelta = timedelta(minutes=2), **params: str) -> None:
        request = InstallRequest(
            request_id=request_id,
            silo=SILO,
            version="v622",
            params=params,
            attempt=1,
            deadline=datetime.now(UTC) + deadline,
        )
        await self.publish(f"fleet.install.{SILO}.request", request.encode(), request_id)

    async def publish(self, subject: str, data: bytes, msg_id: str | None = None) -> int:
        """The stream sequence it is stored at; without `msg_id` as `nats pub` sends it (no header)."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        return (await self.js.publish(subject, data, headers=headers)).seq

    async def _collect(self) -> None:
        observer = await self.js.pull_subscribe_bind(OBSERVER, INSTALL_STREAM)
        try:
            messages = await observer.fetch(100, timeout=0.2)
        except TimeoutError:  # nats-py raises the builtin one (or its subclass) when nothing is there
            return
        finally:
            await observer.unsubscribe()
        for msg in messages:
            await msg.ack()
            kind = msg.subject.rsplit(".", 1)[-1]
            self.reports.append(Report(kind, json.loads(msg.data), (msg.headers or {}).get("Nats-Msg-Id", "")))

    async def wait_for_report(self, kind: str, request_id: str, step: str | None = None) -> Report:
        def found() -> Report | None:
            return next((r for r in self.of(request_id, kind) if step in (None, r.body.get("step"))), None)

        async def arrived() -> bool:
            await self._collect()
            return found() is not None

        await eventually(f"a {kind} report for {request_id} {step or ''}", arrived, WAIT)
        report = found()
        assert report is not None
        return report

    async def wait_settled(self) -> None:
        """Until the agent has acked (or terminated) everything it was given; it acks only after its final
        report is stored, so by then every report it made is in the stream: collect them all."""

        async def settled() -> bool:
            info = await self.js.consumer_info(INSTALL_STREAM, agent_durable(SILO))
            return info.num_ack_pending == 0 and info.num_pending == 0

        await eventually("the agent to ack everything", settled, WAIT)
        observer = await self.js.consumer_info(INSTALL_STREAM, OBSERVER)
        while observer.num_pending:
            await self._collect()
            observer = await self.js.consumer_info(INSTALL_STREAM, OBSERVER)

    def of(self, request_id: str, kind: str | None = None) -> list[Report]:
        return [r for r in self.reports if r.body.get("requestId") == request_id and kind in (None, r.kind)]

    async def silo_state(self) -> SiloState | None:
        """The agent's key in FLEET_STATE, read the way the operator does."""
        kv = await self.js.key_value(STATE_BUCKET)
        try:
            entry = await kv.get(agent_state_key(SILO))
        except nats.js.errors.KeyNotFoundError:
            return None
        return SiloState.model_validate_json(entry.value or b"")

    async def wait_for_state(self, what: str, check: Callable[[SiloState], bool]) -> None:
        async def matches() -> bool:
            state = await self.silo_state()
            return state is not None and check(state)

        await eventually(what, matches, WAIT)

    def runs(self) -> list[str]:
        path = self.work / "runs"
        return path.read_text().split() if path.exists() else []


@pytest.fixture
async def bus(nats_server: Path, tmp_path: Path) -> AsyncIterator[Bus]:
    async with (
        running_hub(nats_server, tmp_path / "hub", hub_users(SILO, "msclo")) as hub,
        running_leaf(nats_server, tmp_path / "leaf", hub, SILO) as (leaf, leaf_port),
    ):
        nc = await hub.connect_as("fleet-operator")
        js = nc.jetstream()
        state = FleetStreamSpec.model_validate(
            {"hub": "eose-hub", "kind": "KeyValue", "name": STATE_BUCKET, "subjects": ["fleet.state.>"]}
        )
        await js.add_stream(render_stream_config(state))
        work = tmp_path / "work"
        work.mkdir()
        (work / "install.py").write_text(SCRIPT)
        running = Bus(leaf, leaf_port, nc, js, work)
        try:
            yield running
            exit_codes = [await agent.stop() for agent in running.agents]
            assert all(code in (0, -signal.SIGKILL) for code in exit_codes), (work / "agent.log").read_text()
        finally:
            for agent in running.agents:
                if agent.process and agent.process.returncode is None:
                    await agent.kill()
            await nc.close()


async def test_request_reports_progress_then_done_and_is_acked(bus: Bus) -> None:
    await bus.create_install_stream()
    await bus.agent()
    await bus.request("r1")

    done = await bus.wait_for_report("done", "r1")
    await bus.wait_settled()
    assert done.body == {"requestId": "r1", "version": "v622", "pods": 6, "health": "ok", "gamma1": 14.134}
    assert done.msg_id == "r1.done.0"
    progress = [(r.body["step"], r.body["index"], r.body["total"], r.body["message"]) for r in bus.of("r1", "progress")]
    assert progress == [
        ("prepare", 1, 3, f"{SILO} v622 r1"),  # the script saw the request in its environment
        ("prepare", 1, 3, "pulling images"),  # a plain line: a message for the current step
        ("verify", 3, 3, "verified"),
    ]
    assert [r.msg_id for r in bus.of("r1", "progress")] == ["r1.progress.1", "r1.progress.2", "r1.progress.3"]
    assert [r.kind for r in bus.of("r1")] == ["progress", "progress", "progress", "done"]


async def test_failing_script_reports_failed_with_step_and_stderr(bus: Bus) -> None:
    await bus.create_install_stream()
    await bus.agent()
    await bus.request("r-retry", fail="1")
    await bus.request("r-final", fail="3")

    retryable = await bus.wait_for_report("failed", "r-retry")
    final = await bus.wait_for_report("failed", "r-final")
    await bus.wait_settled()
    assert retryable.body == {"requestId": "r-retry", "step": "prepare", "error": "quota exceeded", "retryable": True}
    assert final.body["retryable"] is False, "exit code 3 means another attempt would fail the same way"
    assert not bus.of("r-retry", "done")


async def test_install_past_its_deadline_fails_at_the_running_step(bus: Bus) -> None:
    await bus.create_install_stream()
    await bus.agent()
    await bus.request("r-warm-up")  # the deadline runs from publishing: only start it once the agent is serving
    await bus.wait_for_report("done", "r-warm-up")
    await bus.request("r-slow", deadline=timedelta(seconds=2), gate=str(bus.work / "never"))

    failed = await bus.wait_for_report("failed", "r-slow")
    await bus.wait_settled()
    assert failed.body == {"requestId": "r-slow", "step": "wait", "error": "deadline exceeded", "retryable": True}


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
async def test_agent_stopped_mid_install_the_redelivered_request_completes_exactly_once(bus: Bus, stop: str) -> None:
    await bus.create_install_stream()
    first = await bus.agent()
    gate = bus.work / "gate"
    await bus.request("r-kill", gate=str(gate))

    await bus.wait_for_report("progress", "r-kill", step="wait")  # the script is waiting for the gate
    await bus.wait_for_state("the heartbeat to show the install", lambda s: s.active_request_id == "r-kill")
    if stop == "SIGKILL":
        await first.kill()
    else:
        assert await first.stop() == 0, "a clean stop abandons the install, unacked"
    await bus.agent()
    gate.touch()

    await bus.wait_for_report("done", "r-kill")
    await bus.wait_settled()
    assert len(bus.of("r-kill", "done")) == 1
    assert bus.runs() == ["r-kill", "r-kill"], "the killed run and the redelivered one"


async def test_redelivered_finished_request_is_acked_without_running_again(bus: Bus) -> None:
    await Ledger(bus.work / "state").finish("r-old", "done")
    await bus.create_install_stream()
    await bus.request("r-old")
    await bus.agent()

    await bus.wait_settled()
    assert bus.reports == []
    assert bus.runs() == []


async def test_heartbeat_and_boot_event_and_waiting_for_the_consumer(bus: Bus) -> None:
    boot = await bus.nc.subscribe(f"fleet.events.{SILO}.boot")
    await bus.nc.flush()
    await leaf_interest(bus.leaf, f"fleet.events.{SILO}.boot")
    await bus.agent()  # before FLEET_INSTALL and its consumer exist: the agent waits for them

    event = json.loads((await boot.next_msg(WAIT)).data)
    assert (event["silo"], event["event"]) == (SILO, "boot")
    await bus.wait_for_state("the silo state in FLEET_STATE", lambda s: s.silo == SILO and s.version is None)

    await bus.create_install_stream()
    await bus.request("r-late")
    await bus.wait_for_report("done", "r-late")
    await bus.wait_for_state("the installed version and pods", lambda s: (s.version, s.pods) == ("v622", 6))


async def test_the_heartbeat_leaves_the_silos_own_state_key_alone(bus: Bus) -> None:
    """Seed 000's mrcp-agent publishes `fleet.state.ct-fac {"pods":6,...}`; the agent's heartbeat every half
    second once replaced it with its own within seconds. It now has its own key, `ct-fac.agent`."""
    kv = await bus.js.key_value(STATE_BUCKET)
    await kv.put(SILO, b'{"pods":6,"health":"ok"}')
    await bus.agent()
    await bus.wait_for_state("a first heartbeat", lambda s: s.silo == SILO)
    first = await kv.get(agent_state_key(SILO))

    async def beat_again() -> bool:
        return (await kv.get(agent_state_key(SILO))).revision > first.revision

    await eventually("a second heartbeat", beat_again, WAIT)
    assert (await kv.get(SILO)).value == b'{"pods":6,"health":"ok"}'


async def test_garbage_is_terminated_and_later_requests_still_work(bus: Bus) -> None:
    await bus.create_install_stream()
    await bus.agent()
    request = f"fleet.install.{SILO}.request"
    await bus.publish(request, b"not json", "garbage-1")
    await bus.publish(request, b'{"requestId": "no-fields"}', "garbage-2")
    await bus.publish(request, b'{"x": "' + b"y" * 70_000 + b'"}', "garbage-3")
    other_silo = InstallRequest(
        request_id="r-other", silo="msclo", version="v1", attempt=1, deadline=datetime.now(UTC) + timedelta(minutes=1)
    )
    await bus.publish(request, other_silo.encode(), "garbage-4")
    await bus.request("r-after")

    await bus.wait_for_report("done", "r-after")
    await bus.wait_settled()
    info = await bus.js.consumer_info(INSTALL_STREAM, agent_durable(SILO))
    assert info.num_redelivered == 0, "garbage is terminated, never redelivered"
    assert bus.runs() == ["r-after"]


async def test_what_the_agent_cannot_perform_is_answered_failed_never_dropped(bus: Bus) -> None:
    await bus.create_install_stream()
    await bus.agent()
    request = f"fleet.install.{SILO}.request"
    not_json = await bus.publish(request, b"not json")
    no_version = await bus.publish(request, b'{"ns":"eose-entry"}')
    failed = [await bus.wait_for_report("failed", f"bus-{seq}") for seq in (not_json, no_version)]
    assert "request is not JSON" in failed[0].body["error"]
    assert "request has no version" in failed[1].body["error"]
    assert all(f.body["retryable"] is False and f.body["step"] == "accepted" for f in failed)


async def test_a_request_published_by_hand_is_performed_under_its_sequence(bus: Bus) -> None:
    """The seed's `nats pub fleet.install.ct-fac.request '{"v":"v622"}'`: the first answer says what was
    accepted (the operator records the SiloInstall from it), then the install runs like any other."""
    await bus.create_install_stream()
    await bus.agent()
    seq = await bus.publish(f"fleet.install.{SILO}.request", b'{"v":"v622","pods":"4"}')
    rid = f"bus-{seq}"
    done = await bus.wait_for_report("done", rid)
    await bus.wait_settled()
    accepted = bus.of(rid, "progress")[0]
    assert accepted.body["step"] == "accepted"
    assert accepted.body["request"] == {"version": "v622", "params": {"pods": "4"}}
    assert done.body["version"] == "v622"
    assert bus.runs() == [rid]
    scrub_seq = await bus.publish(f"fleet.install.{SILO}.scrub", b'{"reason":"engagement-complete"}')
    await bus.wait_for_report("scrubbed", f"bus-{scrub_seq}")
    assert (bus.work / f"scrubbed-bus-{scrub_seq}").read_text() == "v622"


async def test_scrub_runs_the_script_in_scrub_mode_with_the_installed_version(bus: Bus) -> None:
    await bus.create_install_stream()
    await bus.agent()
    await bus.request("r-install")
    await bus.wait_for_report("done", "r-install")
    scrub = ScrubRequest(request_id="s1", reason="engagement-complete")
    await bus.publish(f"fleet.install.{SILO}.scrub", scrub.encode(), "s1")

    scrubbed = await bus.wait_for_report("scrubbed", "s1")
    await bus.wait_settled()
    assert scrubbed.body == {"requestId": "s1"}
    assert (bus.work / "scrubbed-s1").read_text() == "v622"


async def test_stops_cleanly_while_the_leaf_is_not_up_yet(tmp_path: Path) -> None:
    (tmp_path / "install.py").write_text(SCRIPT)
    nowhere = f"nats://127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "fleetlattice.cli", "agent", "--silo", SILO, "--nats", nowhere,
            "--plan", "command", "--command", "true", "--state-dir", str(tmp_path / "state")]  # fmt: skip
    log = tmp_path / "agent.log"
    agent = await AgentProcess(argv, dict(os.environ), log).start()

    async def retrying() -> bool:
        return "cannot reach" in log.read_text()

    try:
        await eventually("the agent to retry connecting", retrying, WAIT)
    finally:
        assert await agent.stop() == 0
