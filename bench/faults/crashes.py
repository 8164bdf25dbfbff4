"""Faults of the machinery around running installs: the operator SIGKILLed, the hub pod deleted, the API
server restarted. Each repetition starts one install per silo, injects the fault while they run, and waits
for every install to end; lost / duplicated / stuck come from the API's view and the agents' run logs."""

from __future__ import annotations

import random
import signal
import statistics
import time
from collections.abc import Callable

import localcluster

from ..harness import wait_for
from ..installs import phase
from ..watcher import FirstSeen
from .counting import FaultRow, count_outcomes
from .fleet import FaultFleet

STEP_SECONDS = "0.5"  # each of the plan's three steps: an install runs ~1.5 s, long enough to be hit
KILL_WINDOW_SECONDS = 2.5
FINAL_SECONDS = 180  # an install whose report was in flight waits for its redelivery (ack_wait 30 s)


def _summary(samples: list[float], prefix: str) -> dict[str, float | None]:
    if not samples:
        return {f"{prefix}_p50": None, f"{prefix}_max": None}
    return {f"{prefix}_p50": round(statistics.median(samples), 2), f"{prefix}_max": round(max(samples), 2)}


def _reported(obj: dict[str, object]) -> bool:
    """A report was applied: the status write of a progress report, whose ack comes right after it."""
    return bool((obj.get("status") or {}).get("progress"))  # type: ignore[union-attr]


def operator_kills(fleet: FaultFleet, repetitions: int, rng: random.Random) -> FaultRow:
    """Odd repetitions kill the operator the moment a watch shows a report's status write (its ack follows
    within milliseconds: the kill often lands between the two); even ones at a random moment of the run."""
    row = FaultRow("operator SIGKILL mid-install", repetitions)
    watcher = FirstSeen(fleet.env, fleet.namespace, "siloinstalls", _reported)
    watcher.start()
    recoveries: list[float] = []
    names: list[str] = []
    try:
        for rep in range(repetitions):
            batch = [f"{silo}-kill{rep}" for silo in fleet.silos]
            for name, silo in zip(batch, fleet.silos, strict=True):
                fleet.install(name, silo, stepSeconds=STEP_SECONDS)
            if rep % 2:
                wait_for(lambda b=batch: any(n in watcher.seen for n in b), 60, "a report's status write",
                         interval=0.005)
            else:
                time.sleep(rng.uniform(0, KILL_WINDOW_SECONDS))  # the fault's random moment, not a wait
            killed = time.monotonic()
            fleet.operator.stop(signal.SIGKILL)
            fleet.operator.start()
            if fleet.wait_final(batch, FINAL_SECONDS) is not None:
                recoveries.append(round(time.monotonic() - killed, 2))
            names += batch
    finally:
        watcher.stop()
    count_outcomes(row, fleet.outcomes(names))
    row.times = _summary(recoveries, "kill_to_batch_final")
    row.notes.append(f"{(repetitions + 1) // 2} kills at random moments, {repetitions // 2} right after a "
                     "report's status write was seen")
    return row


def _mid_install(fleet: FaultFleet, row: FaultRow, label: str, inject: Callable[[], float | None]) -> None:
    """Installs held at their apply step; the fault injected; the hold released at once, so the agents' next
    reports meet the fault. `inject` returns how long the fault lasted when it knows."""
    resumed: list[float] = []
    finals: list[float] = []
    outages: list[float] = []
    names: list[str] = []
    for rep in range(row.repetitions):
        release = fleet.workdir / f"release-{label}-{rep}"
        batch = [f"{silo}-{label}{rep}" for silo in fleet.silos]
        for name, silo in zip(batch, fleet.silos, strict=True):
            fleet.install(name, silo, waitFile=str(release))
        wait_for(lambda b=batch: all((fleet.status(n).get("progress") or {}).get("step") == "apply" for n in b),
                 120, f"{label}: installs at their apply step")
        start = time.monotonic()
        if (outage := inject()) is not None:
            outages.append(round(outage, 2))
        release.touch()
        try:
            wait_for(lambda b=batch: any((fleet.status(n).get("progress") or {}).get("step") != "apply"
                                         or phase("Succeeded")(fleet.get(n)) for n in b),
                     FINAL_SECONDS, f"{label}: status moving again")
            resumed.append(round(time.monotonic() - start, 2))
        except AssertionError:
            pass  # counted below: the batch is stuck
        if fleet.wait_final(batch, FINAL_SECONDS) is not None:
            finals.append(round(time.monotonic() - start, 2))
        names += batch
    count_outcomes(row, fleet.outcomes(names))
    row.times = {**_summary(resumed, "fault_to_status_resumes"), **_summary(finals, "fault_to_all_final")}
    if outages:
        row.times.update(_summary(outages, "outage"))


def hub_pod_deleted(fleet: FaultFleet, repetitions: int) -> FaultRow:
    row = FaultRow("hub pod deleted mid-install", repetitions)

    def delete() -> float:
        """Returns once the old pod is gone (a deleted pod serves on through its grace period): the agents'
        next reports go to its replacement."""
        start = time.monotonic()
        old = {pod["metadata"]["uid"] for pod in fleet.hub.pods()}
        fleet.env.kubectl("delete", "pods", "-n", fleet.namespace, "--wait=false",
                          *(pod["metadata"]["name"] for pod in fleet.hub.pods()))
        wait_for(lambda: not old & {pod["metadata"]["uid"] for pod in fleet.hub.pods()}, 120, "old hub pod gone")
        return time.monotonic() - start

    _mid_install(fleet, row, "hubdel", delete)
    row.notes.append("outage: delete until the old pod is gone; its replacement starts with what its JetStream "
                     "volume kept (the example hub's is an emptyDir)")
    return row


def apiserver_restarted(fleet: FaultFleet, repetitions: int) -> FaultRow:
    row = FaultRow("API server restarted mid-install", repetitions)
    _mid_install(fleet, row, "apirestart", lambda: localcluster.restart_apiserver(fleet.env.paths))
    row.notes.append("outage: kube-apiserver stopped until /readyz answers again")
    return row
