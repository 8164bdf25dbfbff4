"""The hub's SiloLeaf upkeep loop (handlers.leaf.leaf_upkeep): the status of each of its live leaves from what the
hub's scrape says, written only when it changed, and a resync per leaf every RESYNC_SECONDS. It replaced two kopf
timers per SiloLeaf (a kopf finalizer on every leaf, and a quarter of the loop at 3,500 silos)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf
import pytest

from fleetlattice.handlers import leaf as leaf_handlers
from fleetlattice.logic.conditions import Cond


class Stopped:
    """kopf's DaemonStopped: truthy once set, with the reason and an awaitable wait(timeout)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason: kopf.DaemonStoppingReason | None = None

    def stop(self, reason: kopf.DaemonStoppingReason) -> None:
        self.reason = reason
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109  (kopf's signature)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)


class Leaves:
    def __init__(self) -> None:
        self.connected = False
        self.observed: list[str] = []

    def observe(self, body: dict[str, Any], _spec: Any, secret: str) -> tuple[dict[str, Any], list[Cond]]:
        self.observed.append(body["metadata"]["name"])
        if self.connected:
            return {"credentialsSecret": secret, "connected": True}, [Cond.true("Ready", "LeafConnected", "up")]
        return {"credentialsSecret": secret, "connected": False}, [Cond.false("Ready", "LeafNotConnected", "down")]


class Kube:
    def __init__(self, bodies: dict[str, dict[str, Any]]) -> None:
        self.bodies = bodies
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        self.patches.append((name, status))
        self.bodies[name]["status"].update(status)  # the watch brings the write back into kopf's index
        return True


class Runtime:
    def __init__(self, bodies: dict[str, dict[str, Any]]) -> None:
        self.leaves, self.kube = Leaves(), Kube(bodies)


def leaf(name: str, hub: str = "eose-hub", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf",
            "metadata": {"name": name, "namespace": "fleet", "uid": f"uid-{name}", "generation": 1, **meta},
            "spec": {"silo": name, "hub": hub},
            "status": {"credentialsSecret": f"siloleaf-{name}-credentials", "observedGeneration": 1}}


async def until(check: Any) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


def upkeep(rt: Runtime, bodies: dict[str, dict[str, Any]], stopped: Stopped) -> asyncio.Task[None]:
    """The hub eose-hub's loop over `bodies` as kopf's index holds them."""
    return asyncio.create_task(leaf_handlers.leaf_upkeep(  # type: ignore[arg-type]
        name="eose-hub", namespace="fleet", memo={"runtime": rt}, stopped=stopped,
        leaf_bodies={("fleet", n): [b] for n, b in bodies.items()}, leaf_claims={}, hub_specs={}))


async def test_the_hubs_leaves_get_their_status_once_per_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaf_handlers, "STATUS_SECONDS", 0.02)
    monkeypatch.setattr(leaf_handlers, "RESYNC_SECONDS", 3600.0)
    monkeypatch.setattr(leaf_handlers.kopf, "event", lambda *_a, **_k: None)  # no operator to post through here
    bodies = {"ct-fac": leaf("ct-fac"), "msclo": leaf("msclo", hub="other-hub"),
              "gone": leaf("gone", deletionTimestamp="2026-12-04T12:00:00Z")}
    rt = Runtime(bodies)
    stopped = Stopped()
    loop = upkeep(rt, bodies, stopped)

    await until(lambda: len(rt.leaves.observed) >= 3)
    assert set(rt.leaves.observed) == {"ct-fac"}, "another hub's leaf or one being deleted was looked at"
    assert [name for name, _ in rt.kube.patches] == ["ct-fac"], "an unchanged status was written again"
    rt.leaves.connected = True
    await until(lambda: len(rt.kube.patches) == 2)
    assert rt.kube.patches[1][1]["connected"] is True
    stopped.stop(kopf.DaemonStoppingReason.OPERATOR_EXITING)
    await asyncio.wait_for(loop, 5)
    assert len(rt.kube.patches) == 2, "an operator that stops is no news for the leaves"


async def test_the_leaves_of_a_deleted_hub_say_it_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing looks after a hub's leaves once its loop ends with the hub: they would show Ready for a hub that
    is gone (the kopf timers per leaf it replaced found HubNotFound at their next resync)."""
    monkeypatch.setattr(leaf_handlers, "STATUS_SECONDS", 0.02)
    monkeypatch.setattr(leaf_handlers.kopf, "event", lambda *_a, **_k: None)
    bodies = {"ct-fac": leaf("ct-fac")}
    rt = Runtime(bodies)
    rt.leaves.connected = True
    stopped = Stopped()
    loop = upkeep(rt, bodies, stopped)
    await until(lambda: rt.kube.patches)
    stopped.stop(kopf.DaemonStoppingReason.RESOURCE_DELETED)
    await asyncio.wait_for(loop, 5)
    name, status = rt.kube.patches[-1]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (name, status["connected"], ready["status"], ready["reason"]) == ("ct-fac", False, "False", "HubNotFound")


async def test_a_slow_resync_holds_up_no_status_and_a_leaf_not_reconciled_yet_is_left_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A round waited for every resync in it, so one slow re-apply held up the status of every leaf of the hub
    (at a 1,000-silo cold start the real leaves showed Ready 2.5 minutes late); and leaves kopf had not
    reconciled yet were resynced beside their create handler."""
    monkeypatch.setattr(leaf_handlers, "STATUS_SECONDS", 0.02)
    monkeypatch.setattr(leaf_handlers, "RESYNC_SECONDS", 0.1)
    monkeypatch.setattr(leaf_handlers, "_first_resync_offset", lambda _uid: 0.0)
    monkeypatch.setattr(leaf_handlers.kopf, "event", lambda *_a, **_k: None)
    release = asyncio.Event()
    reconciled: list[str] = []

    async def reconcile(body: dict[str, Any], *_a: Any, **_k: Any) -> None:
        reconciled.append(body["metadata"]["name"])
        if body["metadata"]["name"] == "slow":
            await release.wait()

    monkeypatch.setattr(leaf_handlers, "_reconcile", reconcile)
    bodies = {"slow": leaf("slow"), "fast": leaf("fast"), "new": leaf("new")}
    del bodies["new"]["status"]["observedGeneration"]  # its create handler has not run yet
    rt = Runtime(bodies)
    stopped = Stopped()
    loop = upkeep(rt, bodies, stopped)

    await until(lambda: "slow" in reconciled)
    rt.leaves.connected = True
    await until(lambda: any(name == "fast" and status.get("connected") for name, status in rt.kube.patches))
    assert "new" not in reconciled + rt.leaves.observed, "a leaf kopf has not reconciled yet was looked after"
    release.set()
    stopped.stop(kopf.DaemonStoppingReason.OPERATOR_EXITING)
    await asyncio.wait_for(loop, 5)
