"""The operator's side of the install bus (status store + report consumer) against a real nats-server
with JetStream. The Kubernetes side is an in-memory status API with server-side apply semantics and
injectable failures, so each test can make the API refuse exactly what it needs to:

- a report is acked only after its status change is stored (a failed write means a redelivery);
- a write conflict (another manager changed status) is retried in place from a fresh read, without a
  redelivery; kopf's writes to the object (a new resourceVersion) are no conflict at all;
- a report whose write the API server refuses for good is terminated and counted, and the good
  reports of its batch and of other installs still apply;
- out-of-range and oversized reports change nothing;
- retry rounds of the consumer do not pile up subscriptions on the hub;
- an unreachable hub is one status write, not one per tick."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from kubernetes.client.exceptions import ApiException
from nats.aio.client import Client
from nats.js.errors import NoStreamResponseError, NotFoundError

from fleetlattice.api.bus import (
    INSTALL_STREAM,
    OPERATOR_DURABLE,
    STATE_BUCKET,
    agent_durable,
    install_subject,
    request_id,
)
from fleetlattice.api.messages import SiloState
from fleetlattice.apply.install import InstallRequests
from fleetlattice.apply.install_consumer import HeldReports, ReportConsumer
from fleetlattice.apply.install_store import InstallStore
from fleetlattice.clients import nats_connection
from fleetlattice.clients.hub_connections import HubNotReachable
from fleetlattice.clients.metrics import BUS_MESSAGES
from fleetlattice.logic.heartbeats import SiloHeartbeats
from fleetlattice.logic.report_routing import index_entry
from fleetlattice.render.names import HubRef
from nats_processes import NatsProcess, eventually, free_port, running_server

NAMESPACE = "fleet"
HUB = HubRef("eose-hub", NAMESPACE)


@dataclass
class StatusApi:
    """SiloInstalls in memory: GET returns a copy; a status apply stores it, unless `conflicts_to_inject` says
    another field manager changed status since (409 to an apply that is not forced).
    `refuse(status) -> int | None` answers a status apply with that HTTP status instead of storing it."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse: Callable[[dict[str, Any]], int | None] = lambda _status: None
    writes: int = 0
    reads: int = 0
    conflicts_to_inject: int = 0
    forced: list[bool] = field(default_factory=list)

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.reads += 1
        obj = self.objects.get(name)
        return copy.deepcopy(obj) if obj else None

    async def apply_status(self, obj: dict[str, Any], manager: str, *, force: bool) -> dict[str, Any]:
        stored = self.objects[obj["metadata"]["name"]]
        self.forced.append(force)
        if self.conflicts_to_inject and not force:
            self.conflicts_to_inject -= 1
            raise ApiException(status=409, reason="Conflict")
        refused = self.refuse(obj["status"])
        if refused:
            raise ApiException(status=refused, reason="Refused")
        self.writes += 1
        stored["status"] = copy.deepcopy(obj["status"])
        self.touch(obj["metadata"]["name"])
        return copy.deepcopy(stored)

    def touch(self, name: str) -> None:
        """Any write to the object, as kopf's annotation and finalizer patches are: a new resourceVersion."""
        meta = self.objects[name]["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply, as far as the consumer uses it: creates the object (no status) or keeps it."""
        name = obj["metadata"]["name"]
        if name not in self.objects:
            self.objects[name] = {**copy.deepcopy(obj), "status": {}, "metadata": {
                **obj["metadata"], "uid": f"{name:0>8}-0000-4000-8000-000000000000"[:36], "generation": 1,
                "resourceVersion": "1"}}
        return copy.deepcopy(self.objects[name])

    def add(self, name: str, silo: str) -> str:
        uid = f"{name:0>8}-0000-4000-8000-000000000000"[:36]
        rid = request_id(uid, 1, 1)
        self.objects[name] = {
            "apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloInstall",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid, "generation": 1, "resourceVersion": "1"},
            "spec": {"silo": silo, "version": "v622"},
            "status": {"phase": "Requested", "attempt": 1, "requestId": rid, "observedGeneration": 1,
                       "requestedAt": datetime.now(UTC).isoformat(), "startedAt": datetime.now(UTC).isoformat()},
        }
        return rid

    def phase(self, name: str) -> str:
        return self.objects[name]["status"]["phase"]


class Hubs:
    """The one method ReportConsumer needs of HubConnections."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    async def get(self, _hub: HubRef) -> Client:
        return self.nc


class Stopped:
    """kopf's DaemonStopped: truthy once set, with an awaitable wait(timeout)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109  (kopf's signature)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)


@dataclass
class Fleet:
    server: NatsProcess
    nc: Client
    api: StatusApi

    @property
    def js(self) -> Any:
        return self.nc.jetstream(timeout=5)

    async def create_install_stream(self) -> None:
        await self.js.add_stream(name=INSTALL_STREAM, subjects=["fleet.install.>"], retention="workqueue")

    def indexes(self) -> tuple[dict[str, list[Any]], dict[tuple[str, str], list[Any]]]:
        by_uid: dict[str, list[Any]] = {}
        by_silo: dict[tuple[str, str], list[Any]] = {}
        for obj in self.api.objects.values():
            entry = index_entry(NAMESPACE, obj["metadata"]["name"], obj["spec"], obj["status"])
            by_uid.setdefault(obj["metadata"]["uid"], []).append(entry)
            by_silo.setdefault((NAMESPACE, obj["spec"]["silo"]), []).append(entry)
        return by_uid, by_silo

    async def report(self, silo: str, kind: str, body: dict[str, Any]) -> None:
        await self.js.publish(install_subject(silo, kind), json.dumps(body).encode())

    async def operator_consumer(self) -> Any:
        return await self.js.consumer_info(INSTALL_STREAM, OPERATOR_DURABLE)

    async def deliveries(self) -> int:
        """Every delivery the operator's consumer made, first ones and redeliveries."""
        return (await self.operator_consumer()).delivered.consumer_seq

    async def taken(self, n: int) -> bool:
        """Whether the operator's consumer has taken `n` reports (its durable may not be made yet)."""
        with contextlib.suppress(NotFoundError):
            return await self.deliveries() == n
        return False


@pytest.fixture
async def fleet(nats_server: Path, tmp_path: Path) -> AsyncIterator[Fleet]:
    port, monitoring = free_port(), free_port()
    config = tmp_path / "hub.conf"
    config.write_text(f'port: {port}\nhttp_port: {monitoring}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n')
    async with running_server(nats_server, config, monitoring) as server:
        nc = await nats_connection.connect(servers=f"nats://127.0.0.1:{port}", name="fleet-lattice-operator/test")
        try:
            yield Fleet(server, nc, StatusApi())
        finally:
            await nc.close()


@pytest.fixture
async def consuming(fleet: Fleet) -> AsyncIterator[Callable[..., None]]:
    """Runs the operator's consumer of the hub (with the operator's status store, if given); indexes are
    computed from the API's objects at start."""
    stopped = Stopped()
    tasks: list[asyncio.Task[None]] = []

    def start(store: InstallStore | None = None, heartbeats: SiloHeartbeats | None = None) -> None:
        by_uid, by_silo = fleet.indexes()
        consumer = ReportConsumer(Hubs(fleet.nc), store or InstallStore(fleet.api),  # type: ignore[arg-type]
                                  heartbeats or SiloHeartbeats(), HUB, by_uid, by_silo, {})
        tasks.append(asyncio.create_task(consumer.run(stopped)))

    yield start
    stopped.event.set()
    for task in tasks:
        await asyncio.wait_for(task, 15)


def outcome_count(kind: str, outcome: str) -> float:
    return BUS_MESSAGES.labels(kind, outcome)._value.get()


async def test_a_report_is_acked_only_after_its_status_is_stored(fleet: Fleet, consuming: Callable[[], None]) -> None:
    await fleet.create_install_stream()
    rid = fleet.api.add("a", "ct-fac")
    failures = {"left": 2}

    def refuse_twice(_status: dict[str, Any]) -> int | None:
        if failures["left"]:
            failures["left"] -= 1
            return 503
        return None

    fleet.api.refuse = refuse_twice
    consuming()
    await fleet.report("ct-fac", "done", {"requestId": rid, "pods": 2})

    async def succeeded() -> bool:
        return fleet.api.phase("a") == "Succeeded"

    await eventually("the done to be stored after two failed writes", succeeded, 30)
    assert await fleet.deliveries() == 3, "the report was acked before its status write succeeded"
    assert (await fleet.operator_consumer()).num_ack_pending == 0


async def test_a_write_conflict_is_retried_without_a_redelivery(fleet: Fleet, consuming: Callable[[], None]) -> None:
    await fleet.create_install_stream()
    rid = fleet.api.add("a", "ct-fac")
    fleet.api.conflicts_to_inject = 1
    consuming()
    await fleet.report("ct-fac", "done", {"requestId": rid})

    async def succeeded() -> bool:
        return fleet.api.phase("a") == "Succeeded"

    await eventually("the done to be stored", succeeded)
    assert await fleet.deliveries() == 1, "a 409 went back to JetStream instead of being retried in place"
    assert fleet.api.forced == [False, True], "after a conflict the store must re-read and then own the fields"


async def test_each_later_report_of_an_install_costs_one_request(fleet: Fleet, consuming: Callable[[], None]) -> None:
    """The store starts the next change from what its last write returned: one PUT per report, no GET."""
    await fleet.create_install_stream()
    rid = fleet.api.add("a", "ct-fac")
    consuming()
    for index, kind in enumerate(("progress", "progress", "done"), 1):
        await fleet.report("ct-fac", kind, {"requestId": rid, "step": f"s{index}", "index": index, "total": 3})

        async def stored(n: int = index) -> bool:
            return fleet.api.writes == n

        await eventually(f"report {index} stored", stored)
        fleet.api.touch("a")  # kopf patched the object in between: no conflict, no read
    assert fleet.api.phase("a") == "Succeeded"
    assert fleet.api.reads == 1, f"{fleet.api.reads} reads for 3 reports"
    assert fleet.api.forced == [False] * 3


async def test_progress_waits_for_the_next_reports_and_a_done_writes_them_at_once(
        fleet: Fleet, consuming: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent's quick steps were one status write per report (4.9 writes per install at a 1,000-silo cold start).
    Progress now waits up to REPORT_HOLD_SECONDS for the install's next reports, across fetches; a final report
    writes everything waiting at once. (The hold is made long here so the test cannot depend on timing.)"""
    monkeypatch.setattr("fleetlattice.apply.install_consumer.REPORT_HOLD_SECONDS", 60.0)
    await fleet.create_install_stream()
    rid = fleet.api.add("a", "ct-fac")
    consuming()
    for index in (1, 2):
        await fleet.report("ct-fac", "progress", {"requestId": rid, "step": f"s{index}", "index": index, "total": 3})
        await eventually(f"progress {index} taken", functools.partial(fleet.taken, index))  # a fetch of its own
    assert fleet.api.writes == 0
    await fleet.report("ct-fac", "done", {"requestId": rid})

    async def succeeded() -> bool:
        return fleet.api.phase("a") == "Succeeded"

    await eventually("the done stored", succeeded)
    assert fleet.api.writes == 1, f"{fleet.api.writes} status writes for 2 progress reports and a done"
    assert [h["step"] for h in fleet.api.objects["a"]["status"]["history"]][:2] == ["s1", "s2"]

    async def all_acked() -> bool:
        return (await fleet.operator_consumer()).num_ack_pending == 0

    await eventually("every report acked", all_acked)


async def test_held_reports_wait_while_more_come_but_not_past_a_final_one_or_the_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At a cold start an install's `done` came a few hundred ms after its progress and missed their write (3.0 writes
    per install at 1,000 silos); the hold now lasts while reports keep coming, up to REPORT_HOLD_MAX_SECONDS."""
    monkeypatch.setattr("fleetlattice.apply.install_consumer.REPORT_HOLD_SECONDS", 60.0)
    held = HeldReports("ct-fac", None, lambda: False)
    held.add(None, "progress", {})
    quiet = asyncio.create_task(held.quiet())
    for index in range(3):
        await asyncio.sleep(0)  # the loop turns; nothing ends a hold but time, a final report or the cap
        held.add(None, "progress", {"index": index})
    assert not quiet.done()
    held.add(None, "done", {})
    await asyncio.wait_for(quiet, 5)
    monkeypatch.setattr("fleetlattice.apply.install_consumer.REPORT_HOLD_MAX_SECONDS", 0.0)
    capped = HeldReports("ct-fac", None, lambda: False)
    capped.add(None, "progress", {})
    await asyncio.wait_for(capped.quiet(), 5)


async def test_progress_is_held_while_the_consumer_is_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a cold start's backlog an install's reports reached the consumer 8-9 s apart although its agent sent them
    within a second, so a quiet second split them (3.4 writes per install at 1,000 silos): while the stream holds
    reports the consumer has not fetched, a quiet spell does not end the hold; catching up, or the cap, does."""
    monkeypatch.setattr("fleetlattice.apply.install_consumer.REPORT_HOLD_SECONDS", 0.0)
    behind = [True]
    held = HeldReports("ct-fac", None, lambda: behind[0])
    held.add(None, "progress", {})
    quiet = asyncio.create_task(held.quiet())
    for _ in range(20):
        await asyncio.sleep(0)  # many quiet spells pass
    assert not quiet.done()
    behind[0] = False
    await asyncio.wait_for(quiet, 5)
    monkeypatch.setattr("fleetlattice.apply.install_consumer.REPORT_HOLD_MAX_SECONDS", 0.0)
    capped = HeldReports("ct-fac", None, lambda: True)
    capped.add(None, "progress", {})
    await asyncio.wait_for(capped.quiet(), 5)


async def test_reports_that_come_while_a_write_is_on_its_way_join_the_next_one(
        fleet: Fleet, consuming: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a loaded API server a status write takes seconds; at a 1,000-silo cold start each report that came in
    meanwhile made a write of its own (4.9 per install). Now they wait for it and go together in the next one.
    (No hold here, so only the write in flight can join them.)"""
    monkeypatch.setattr("fleetlattice.apply.install_consumer.REPORT_HOLD_SECONDS", 0.0)
    await fleet.create_install_stream()
    rid = fleet.api.add("a", "ct-fac")
    landed, store_status = asyncio.Event(), fleet.api.apply_status

    async def slow_first_write(obj: dict[str, Any], manager: str, *, force: bool) -> dict[str, Any]:
        if fleet.api.writes == 0:
            await landed.wait()
        return await store_status(obj, manager, force=force)

    fleet.api.apply_status = slow_first_write  # type: ignore[method-assign]
    consuming()
    reports = [("progress", {"requestId": rid, "step": f"s{i}", "index": i, "total": 3}) for i in (1, 2, 3)]
    for count, (kind, body) in enumerate([*reports, ("done", {"requestId": rid})], 1):
        await fleet.report("ct-fac", kind, body)
        await eventually(f"report {count} taken", functools.partial(fleet.taken, count))
    landed.set()

    async def succeeded() -> bool:
        return fleet.api.phase("a") == "Succeeded"

    await eventually("the done stored", succeeded)
    assert fleet.api.writes == 2, f"{fleet.api.writes} status writes: the reports behind the first went one by one"


async def test_a_fleets_reports_behind_slow_writes_are_all_taken_and_go_one_write_per_install(
        fleet: Fleet, consuming: Callable[[], None]) -> None:
    """At a cold start every install has a write on its way. The consumer stopped taking reports at 1,024 unsettled
    ones, so the rest sat in the stream and each came back alone after a write (4.8 writes per install at 1,000
    silos). Now the bound is bytes (a fetch's worth of the largest reports) and 300 installs' reports all wait
    together for their install's next write."""
    await fleet.create_install_stream()
    installs = {f"i{n:03}": (f"ct-s{n:03}", fleet.api.add(f"i{n:03}", f"ct-s{n:03}")) for n in range(300)}
    landed, store_status = asyncio.Event(), fleet.api.apply_status

    async def slow_writes(obj: dict[str, Any], manager: str, *, force: bool) -> dict[str, Any]:
        await landed.wait()
        return await store_status(obj, manager, force=force)

    fleet.api.apply_status = slow_writes  # type: ignore[method-assign]
    consuming()
    for silo, rid in installs.values():
        await fleet.report(silo, "progress", {"requestId": rid, "step": "s1", "index": 1, "total": 3})
    await eventually("every first report taken", functools.partial(fleet.taken, 300))
    for silo, rid in installs.values():
        for index in (2, 3):
            await fleet.report(silo, "progress", {"requestId": rid, "step": f"s{index}", "index": index, "total": 3})
        await fleet.report(silo, "done", {"requestId": rid})
    await eventually("every report taken while the writes are on their way", functools.partial(fleet.taken, 1200))
    landed.set()

    async def all_succeeded() -> bool:
        return all(fleet.api.phase(name) == "Succeeded" for name in installs)

    await eventually("every install Succeeded", all_succeeded, 60)
    # The first report's write, then one for the rest (or one for all, when they came within the hold).
    assert fleet.api.writes <= 600, f"{fleet.api.writes} status writes for 300 installs' 4 reports each"


@dataclass
class UnackableReport:
    """A report whose ack cannot go out (its connection went after the fetch)."""

    subject: str
    data: bytes

    async def ack(self) -> None:
        raise nats.errors.ConnectionClosedError


async def test_a_held_write_whose_ack_fails_is_logged_not_lost_in_its_task(
        fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    rid = fleet.api.add("a", "ct-fac")
    by_uid, by_silo = fleet.indexes()
    consumer = ReportConsumer(Hubs(fleet.nc), InstallStore(fleet.api), SiloHeartbeats(),  # type: ignore[arg-type]
                              HUB, by_uid, by_silo, {})
    caplog.set_level(logging.WARNING, logger="fleetlattice.apply.install_consumer")
    done = json.dumps({"requestId": rid}).encode()
    await consumer.process([UnackableReport(install_subject("ct-fac", "done"), done)])

    async def logged() -> bool:
        return "reports of fleet/a not settled" in caplog.text

    await eventually("the failed ack logged", logged)
    assert fleet.api.phase("a") == "Succeeded"  # stored; JetStream redelivers the report, which is then a duplicate


async def test_a_new_attempt_is_published_then_stored_in_one_status_write(fleet: Fleet) -> None:
    """Reserve-then-publish cost two status writes per attempt (Pending, then Requested). Now the request is on
    the bus before the one write that stores the attempt Requested, and a publish that fails stores nothing."""
    api = fleet.api
    api.add("a", "ct-fac")
    api.objects["a"]["status"] = {}
    on_the_bus_at_write: list[bool] = []
    store_status = api.apply_status

    async def apply_status(obj: dict[str, Any], manager: str, *, force: bool) -> dict[str, Any]:
        try:
            await fleet.js.get_last_msg(INSTALL_STREAM, install_subject("ct-fac", "request"))
            on_the_bus_at_write.append(True)
        except NotFoundError:
            on_the_bus_at_write.append(False)
        return await store_status(obj, manager, force=force)

    api.apply_status = apply_status  # type: ignore[method-assign]
    installs = InstallRequests(api, Hubs(fleet.nc), InstallStore(api), SiloHeartbeats())  # type: ignore[arg-type]
    await fleet.create_install_stream()
    await installs.enlist_silo(NAMESPACE, HUB.name, "ct-fac")
    await fleet.js.delete_stream(INSTALL_STREAM)  # the publish finds no stream to store it
    with pytest.raises(NoStreamResponseError):
        await installs.advance(NAMESPACE, "a", HUB.name, copy.deepcopy(api.objects["a"]))
    assert api.writes == 0, "an attempt was stored that never reached the bus"
    await fleet.create_install_stream()
    await installs.advance(NAMESPACE, "a", HUB.name, copy.deepcopy(api.objects["a"]))
    status = api.objects["a"]["status"]
    assert (api.writes, status["phase"], status["attempt"]) == (1, "Requested", 1)
    assert on_the_bus_at_write == [True]
    sent = await fleet.js.get_last_msg(INSTALL_STREAM, install_subject("ct-fac", "request"))
    assert json.loads(sent.data)["requestId"] == status["requestId"]


async def test_a_report_of_an_attempt_not_stored_yet_waits_for_it(fleet: Fleet, consuming: Callable[..., None]) -> None:
    """An operator killed between publishing an attempt and storing it: the agent's reports of that attempt come
    before the restarted operator stores it again (same requestId). They are redelivered until it is, not
    dropped as late (that left the install Requested until its timeout, and a retry ran the plan twice)."""
    await fleet.create_install_stream()
    rid = fleet.api.add("a", "ct-fac")
    fleet.api.objects["a"]["status"] = {}
    store = InstallStore(fleet.api)  # type: ignore[arg-type]
    consuming(store)
    await fleet.report("ct-fac", "done", {"requestId": rid, "pods": 1})

    async def redelivered() -> bool:
        try:
            return await fleet.deliveries() >= 2
        except NotFoundError:  # the consumer has not made its durable yet
            return False

    await eventually("the early report to be delivered again", redelivered)
    status = fleet.api.objects["a"]["status"]
    assert (status.get("phase"), status.get("requestId")) == ("Pending", ""), "the early report was applied"
    installs = InstallRequests(fleet.api, Hubs(fleet.nc), store, SiloHeartbeats())  # type: ignore[arg-type]
    await installs.advance(NAMESPACE, "a", HUB.name)

    async def succeeded() -> bool:
        return fleet.api.phase("a") == "Succeeded"

    await eventually("the done to be stored once its attempt is", succeeded, 30)


async def test_a_reports_write_says_the_agent_is_connected(fleet: Fleet, consuming: Callable[..., None]) -> None:
    """The hub's ticker wrote AgentConnected in a write of its own once the heartbeat came: at a cold start one
    more status write per install. The report's write carries it (the agent's heartbeat is already in memory)."""
    await fleet.create_install_stream()
    rid = fleet.api.add("a", "ct-fac")
    heartbeats = SiloHeartbeats()
    heartbeats.record(NAMESPACE, "ct-fac", SiloState(silo="ct-fac", ts=datetime.now(UTC)))
    consuming(heartbeats=heartbeats)
    await fleet.report("ct-fac", "done", {"requestId": rid, "pods": 1})

    async def succeeded() -> bool:
        return fleet.api.phase("a") == "Succeeded"

    await eventually("the done to be stored", succeeded)
    conditions = {c["type"]: c["status"] for c in fleet.api.objects["a"]["status"]["conditions"]}
    assert (fleet.api.writes, conditions) == (1, {"Ready": "True", "AgentConnected": "True"})


async def test_only_a_request_that_is_on_the_bus_is_recorded_as_a_siloinstall(
        fleet: Fleet, consuming: Callable[[], None]) -> None:
    """The agent's `accepted` report makes the operator record a request published by hand; a silo claiming
    one that is not on FLEET_INSTALL, or another silo's, must not create anything (or any silo could fill
    the namespace with SiloInstalls)."""
    await fleet.create_install_stream()
    seq = (await fleet.js.publish("fleet.install.ct-fac.request", b'{"v":"v622"}')).seq
    consuming()
    accepted = {"step": "accepted", "request": {"version": "v622", "params": {}}}
    await fleet.report("msclo", "progress", {**accepted, "requestId": f"bus-{seq}"})
    await fleet.report("ct-fac", "progress", {**accepted, "requestId": f"bus-{seq + 100}"})
    await fleet.report("ct-fac", "progress", {**accepted, "requestId": f"bus-{seq}"})

    async def all_handled() -> bool:
        try:
            info = await fleet.operator_consumer()
        except NotFoundError:  # the consumer has not created its durable yet (seen under load: "consumer not found")
            return False
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually("every report handled", all_handled)
    assert set(fleet.api.objects) == {f"ct-fac-bus-{seq}"}
    status = fleet.api.objects[f"ct-fac-bus-{seq}"]["status"]
    assert (status["requestId"], status["phase"], status["attempt"]) == (f"bus-{seq}", "InProgress", 1)


async def test_an_unstorable_report_is_terminated_and_the_rest_still_apply(
        fleet: Fleet, consuming: Callable[[], None]) -> None:
    await fleet.create_install_stream()
    rid_a = fleet.api.add("a", "ct-fac")
    rid_b = fleet.api.add("b", "forge")
    # The API server refuses any status holding the poisoned message (as it refuses an object past its size limit).
    fleet.api.refuse = lambda status: 422 if "poison" in json.dumps(status) else None
    rejected_before = outcome_count("progress", "rejected")
    # Published before the consumer starts, so the good and the bad report of `a` arrive in one batch.
    await fleet.report("ct-fac", "progress", {"requestId": rid_a, "step": "pull", "index": 1, "total": 3})
    await fleet.report("ct-fac", "progress", {"requestId": rid_a, "step": "poison", "index": 2, "total": 3})
    await fleet.report("forge", "done", {"requestId": rid_b})
    consuming()

    async def settled() -> bool:
        try:
            info = await fleet.operator_consumer()
        except NotFoundError:  # the consumer has not created its durable yet
            return False
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually("every report to be acked or terminated", settled)
    assert fleet.api.phase("b") == "Succeeded"
    assert fleet.api.objects["a"]["status"]["progress"]["step"] == "pull"
    assert outcome_count("progress", "rejected") == rejected_before + 1
    assert await fleet.deliveries() == 3, "a refused report was redelivered"


@pytest.mark.parametrize("report", [
    {"step": "x", "index": 10**30, "total": 3},
    {"step": "x", "index": 1, "total": 3, "message": "m" * 2000},
    {"step": "s" * 200, "index": 1, "total": 3},
])
async def test_out_of_range_reports_change_nothing(fleet: Fleet, consuming: Callable[[], None],
                                                   report: dict[str, Any]) -> None:
    await fleet.create_install_stream()
    rid = fleet.api.add("a", "ct-fac")
    before = copy.deepcopy(fleet.api.objects["a"]["status"])
    invalid_before = outcome_count("progress", "ignored-invalid")
    consuming()
    await fleet.report("ct-fac", "progress", {"requestId": rid, **report})

    async def counted() -> bool:
        return outcome_count("progress", "ignored-invalid") == invalid_before + 1

    await eventually("the report to be counted as invalid", counted)
    after = fleet.api.objects["a"]["status"]
    assert (after.get("progress"), after.get("history", []), after["phase"]) == (None, before.get("history", []),
                                                                                "Requested")


async def test_retry_rounds_do_not_pile_up_subscriptions(fleet: Fleet, consuming: Callable[[], None],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Without FLEET_INSTALL every round fails after starting the heartbeat watch: each round must stop
    what the one before it started (it once grew 2 -> 4 -> 7 consumers in 20 s)."""
    await fleet.js.create_key_value(bucket=STATE_BUCKET)

    async def subscriptions() -> int:
        conns = (await fleet.server.monitor("connz?subs=1"))["connections"]
        return sum(c.get("num_subscriptions", 0) for c in conns)

    async def kv_consumers() -> int:
        return (await fleet.js.stream_info(f"KV_{STATE_BUCKET}")).state.consumer_count

    caplog.set_level(logging.WARNING, logger="fleetlattice.apply.install_consumer")
    baseline = await subscriptions()
    consuming()
    consumers_seen: list[int] = []

    async def four_rounds() -> bool:
        consumers_seen.append(await kv_consumers())
        return sum("retrying" in r.getMessage() for r in caplog.records) >= 4

    await eventually("four retry rounds", four_rounds, 40)
    assert max(consumers_seen) <= 1, f"heartbeat watchers piled up: {max(consumers_seen)} consumers on the bucket"
    assert await subscriptions() <= baseline + 2


class UnreachableHubs:
    async def get(self, hub: HubRef) -> Client:
        raise HubNotReachable(f"hub {hub} is reconnecting")


async def test_an_unreachable_hub_costs_one_status_write_not_one_per_tick() -> None:
    """Ready used to flap between the phase and HubUnavailable on every tick (two writers of one field)."""
    api = StatusApi()
    api.add("a", "ct-fac")
    installs = InstallRequests(api, UnreachableHubs(), InstallStore(api), SiloHeartbeats())  # type: ignore[arg-type]
    for _tick in range(3):
        await installs.tick(NAMESPACE, "a", HUB.name, "ct-fac", copy.deepcopy(api.objects["a"]))
    ready = next(c for c in api.objects["a"]["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "HubUnavailable")
    assert api.writes == 1


async def test_a_silos_agent_consumer_comes_with_its_leaf(fleet: Fleet) -> None:
    """The seeds' raw `nats pub fleet.install.<silo>.request` waited in FLEET_INSTALL for ever on a fleet where no
    SiloInstall had been applied: the agent's durable was created only with the first one. Now the SiloLeaf brings
    it (retried while the stream is missing), and retiring the silo takes it away."""
    installs = InstallRequests(fleet.api, Hubs(fleet.nc), InstallStore(fleet.api), SiloHeartbeats())  # type: ignore[arg-type]
    await installs.enlist_silo(NAMESPACE, HUB.name, "ct-fac")  # no FLEET_INSTALL yet: nothing, no error
    await fleet.create_install_stream()
    await installs.enlist_silo(NAMESPACE, HUB.name, "ct-fac")
    info = await fleet.js.consumer_info(INSTALL_STREAM, agent_durable("ct-fac"))
    assert set(info.config.filter_subjects) == {install_subject("ct-fac", k) for k in ("request", "scrub")}
    await installs.retire_silo(NAMESPACE, HUB.name, "ct-fac")
    with pytest.raises(NotFoundError):
        await fleet.js.consumer_info(INSTALL_STREAM, agent_durable("ct-fac"))
    await installs.enlist_silo(NAMESPACE, HUB.name, "ct-fac")  # a silo that comes back gets it again
    assert (await fleet.js.consumer_info(INSTALL_STREAM, agent_durable("ct-fac"))).name == agent_durable("ct-fac")


async def test_a_silos_durable_is_made_sure_of_once_a_while_not_per_publish(fleet: Fleet,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """At a thousand silos every publish made three JetStream calls for durables that existed (stream info and
    two consumer creates), and the hub's API timed out. Within ENLISTED_SECONDS a silo costs none; after it, a
    durable lost with the stream (a hub restarted without persistent storage) is made again."""
    installs = InstallRequests(fleet.api, Hubs(fleet.nc), InstallStore(fleet.api), SiloHeartbeats())  # type: ignore[arg-type]
    await fleet.create_install_stream()
    await installs.enlist_silo(NAMESPACE, HUB.name, "ct-fac")
    await fleet.js.delete_consumer(INSTALL_STREAM, agent_durable("ct-fac"))
    await installs.enlist_silo(NAMESPACE, HUB.name, "ct-fac")
    with pytest.raises(NotFoundError):  # remembered: no call made
        await fleet.js.consumer_info(INSTALL_STREAM, agent_durable("ct-fac"))
    monkeypatch.setattr("fleetlattice.apply.install.ENLISTED_SECONDS", 0.0)
    await installs.enlist_silo(NAMESPACE, HUB.name, "ct-fac")
    assert (await fleet.js.consumer_info(INSTALL_STREAM, agent_durable("ct-fac"))).name == agent_durable("ct-fac")


async def test_a_first_change_starts_from_kopfs_copy_without_a_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """At a cold start each install's first status write was preceded by a GET (1,000 of them at 1,000 silos).
    An install this process never wrote starts from kopf's copy; one whose last write it no longer holds is read,
    as kopf's copy may predate that write."""
    api = StatusApi()
    api.add("a", "ct-fac")
    store = InstallStore(api)  # type: ignore[arg-type]

    async def to_in_progress(status: Any, _spec: Any, _body: Any) -> Any:
        return status.model_copy(update={"phase": "InProgress"})

    async def to_succeeded(status: Any, _spec: Any, _body: Any) -> Any:
        return status.model_copy(update={"phase": "Succeeded"})

    kopfs_copy = copy.deepcopy(api.objects["a"])
    await store.update(NAMESPACE, "a", to_in_progress, seen=kopfs_copy)
    assert (api.reads, api.writes, api.phase("a")) == (0, 1, "InProgress")
    monkeypatch.setattr("fleetlattice.apply.install_store.WRITTEN_COPIES", 0)
    store._remember((NAMESPACE, "a"), api.objects["a"])  # evicts every copy: WRITTEN_COPIES is 0
    await store.update(NAMESPACE, "a", to_succeeded, seen=kopfs_copy)  # kopf's copy predates the write
    assert (api.reads, api.writes, api.phase("a")) == (1, 2, "Succeeded")


async def test_one_loop_per_hub_ticks_its_installs_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's ticker replaces a kopf timer per install (each put a kopf finalizer on its install, and adding
    it collided with the install's first status writes). Every due install is ticked each round, a silo without
    a SiloLeaf is said so, an install being deleted is left alone, and the loop ends with its hub's daemon."""
    monkeypatch.setattr("fleetlattice.apply.install.TICK_SECONDS", 0.05)
    api = StatusApi()
    for name in ("a", "orphan", "going"):
        api.add(name, f"silo-{name}")
    api.objects["going"]["metadata"]["deletionTimestamp"] = "2026-12-04T12:00:00Z"
    installs = InstallRequests(api, UnreachableHubs(), InstallStore(api), SiloHeartbeats())  # type: ignore[arg-type]
    stopped = Stopped()
    rounds = 0

    def due() -> list[tuple[dict[str, Any], str | None]]:
        nonlocal rounds
        rounds += 1
        return [(copy.deepcopy(api.objects["a"]), HUB.name), (copy.deepcopy(api.objects["orphan"]), None),
                (copy.deepcopy(api.objects["going"]), HUB.name)]

    loop = asyncio.create_task(installs.tick_all(HUB, due, stopped))

    async def three_rounds() -> bool:
        return rounds >= 3

    await eventually("three rounds", three_rounds, 10)
    stopped.event.set()
    await asyncio.wait_for(loop, 5)

    def ready(name: str) -> tuple[str, str]:
        cond = next(c for c in api.objects[name]["status"]["conditions"] if c["type"] == "Ready")
        return cond["status"], cond["reason"]

    assert ready("a") == ("False", "HubUnavailable")
    assert ready("orphan") == ("False", "SiloUnknown")
    assert "conditions" not in api.objects["going"]["status"]
    assert api.writes == 2, "a tick that changes nothing must write nothing"
