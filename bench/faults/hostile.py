"""Hostile reports from silo credentials while honest installs run: malformed, oversized, wrong types,
out-of-range numbers, unknown and finished requestIds, other silos' subjects. Nothing of it may change a
status or crash the operator; the honest installs' latency is compared with a calm run of the same size."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS

from fleetlattice.api.bus import inbox_prefix, install_subject

from ..installs import phase
from ..watcher import FirstSeen
from .counting import FaultRow, count_outcomes
from .fleet import FaultFleet

HONEST_SECONDS = 300
MARK = "hostile"  # in every field a hostile report could land in: a history entry with it is a wrong change
# The fields the agent's reports own; conditions are the operator's and move with heartbeats.
REPORTED = ("phase", "requestId", "progress", "history", "result", "lastError")

# (subject kind, payload) makers: rid is the silo's active requestId (or an unknown one), done_rid a finished one.
Hostile = Callable[[int, str, str], tuple[str, bytes]]
HOSTILE: tuple[tuple[str, Hostile], ...] = (
    ("not JSON", lambda n, rid, _: ("progress", b"\x00\xffnot json {" + str(n).encode())),
    ("JSON, not an object", lambda n, rid, _: ("done", b"[1, 2, 3]")),
    ("oversized", lambda n, rid, _: ("done", json.dumps({"requestId": rid, "pods": 7, "health": MARK,
                                                        "blob": "x" * 200_000}).encode())),
    ("wrong types", lambda n, rid, _: ("progress", json.dumps({"requestId": rid, "step": {"a": MARK},
                                                              "index": "three", "total": []}).encode())),
    ("requestId not a string", lambda n, rid, _: ("done", json.dumps({"requestId": 12345, "pods": 7}).encode())),
    ("index out of range", lambda n, rid, _: ("progress", json.dumps({"requestId": rid, "step": MARK,
                                                                     "index": 10**30, "total": 3}).encode())),
    ("pods out of range", lambda n, rid, _: ("done", json.dumps({"requestId": rid, "pods": -5,
                                                                "health": MARK}).encode())),
    ("text too long", lambda n, rid, _: ("progress", json.dumps({"requestId": rid, "step": MARK, "index": 1,
                                                                "total": 3, "message": MARK * 500}).encode())),
    ("details too large", lambda n, rid, _: ("done", json.dumps({"requestId": rid, "pods": 7, "health": MARK,
                                                                "gamma1": [MARK] * 1000}).encode())),
    ("failed, wrong types", lambda n, rid, _: ("failed", json.dumps({"requestId": rid, "step": MARK, "error": 5,
                                                                    "retryable": "maybe"}).encode())),
    ("unknown requestId", lambda n, rid, _: ("done", json.dumps({"requestId": f"{MARK}-unknown-{n}", "pods": 7,
                                                                "health": MARK}).encode())),
    ("finished requestId", lambda n, rid, done: ("done", json.dumps({"requestId": done, "pods": 7,
                                                                    "health": MARK}).encode())),
)
OTHER_SILO = "other silo's subject"


def _reported(status: dict[str, Any]) -> dict[str, Any]:
    return {key: status.get(key) for key in REPORTED}


def _honest(fleet: FaultFleet, label: str, n: int) -> tuple[list[str], dict[str, float]]:
    """n installs over the silos, round robin; returns their names and when each was created."""
    created = {}
    names = []
    for j in range(n):
        silo = fleet.silos[j % len(fleet.silos)]
        name = f"{silo}-{label}{j}"
        fleet.install(name, silo)
        created[name] = time.perf_counter()
        names.append(name)
    return names, created


async def _run_honest(fleet: FaultFleet, label: str, n: int) -> tuple[list[str], list[float]]:
    watcher = FirstSeen(fleet.env, fleet.namespace, "siloinstalls", phase("Succeeded"))
    watcher.start()
    try:
        names, created = await asyncio.to_thread(_honest, fleet, label, n)
        with contextlib.suppress(AssertionError):  # what did not finish is counted as stuck or lost
            await watcher.wait_all(names, HONEST_SECONDS)
        return names, [watcher.seen[name] - created[name] for name in names if name in watcher.seen]
    finally:
        watcher.stop()


async def _connect(fleet: FaultFleet, silo: str, errors: list[str]) -> NATS:
    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    return await fleet.hub.connect(fleet.hub.silo_seed(silo), inbox_prefix=inbox_prefix(silo).encode(),
                                   error_cb=on_error)


async def _attack(fleet: FaultFleet, total: int, finished: dict[str, str], pace: float,
                  sent: dict[str, int], errors: list[str]) -> None:
    """`total` hostile reports from the silos' own hub credentials, round robin over silos and kinds; the
    active requestId of each silo is read as the run goes (what a hostile silo knows of its own install)."""
    conns = {silo: await _connect(fleet, silo, errors) for silo in fleet.silos}
    kinds = itertools.cycle([*HOSTILE, (OTHER_SILO, None)])
    try:
        for n in range(total):
            silo = fleet.silos[n % len(fleet.silos)]
            if n % 50 == 0:
                active = {s: st.get("requestId", "") for s, st in (await asyncio.to_thread(_active, fleet)).items()}
            rid = active.get(silo) or f"{MARK}-none-{n}"
            label, make = next(kinds)
            if make is None:
                other = fleet.silos[(n + 1) % len(fleet.silos)]
                subject = install_subject(other, "done")
                payload = json.dumps({"requestId": active.get(other, ""), "pods": 7, "health": MARK}).encode()
            else:
                kind, payload = make(n, rid, finished[silo])
                subject = install_subject(silo, kind)
            await conns[silo].publish(subject, payload)
            sent[label] = sent.get(label, 0) + 1
            await asyncio.sleep(pace)  # spreads the attack over the honest installs' run
        for nc in conns.values():
            await nc.flush()
    finally:
        await asyncio.gather(*(nc.close() for nc in conns.values()), return_exceptions=True)


def _active(fleet: FaultFleet) -> dict[str, dict[str, Any]]:
    """Each silo's install that is not finished yet, as the API shows it."""
    found: dict[str, dict[str, Any]] = {}
    for item in fleet.env.list("siloinstalls", fleet.namespace):
        status = item.get("status") or {}
        if status.get("phase") in ("Requested", "InProgress"):
            found[item["spec"]["silo"]] = status
    return found


def _wrong(fleet: FaultFleet, names: list[str]) -> list[str]:
    """Honest installs that show a hostile report's mark anywhere in what reports write."""
    return [name for name in names if MARK in json.dumps(_reported(fleet.status(name)))]


async def hostile_reports(fleet: FaultFleet, honest: int, total: int) -> FaultRow:
    row = FaultRow("hostile reports from silo credentials", 1)
    calm_names, calm = await _run_honest(fleet, "calm", honest)
    finished = {}
    for name in calm_names:
        finished.setdefault(name.rsplit("-calm", 1)[0], fleet.status(name).get("requestId", ""))
    before = {name: _reported(fleet.status(name)) for name in calm_names}
    pid = fleet.operator.proc.pid if fleet.operator.proc else None
    metrics_before = fleet.operator.metrics()
    calm_span = max(calm) if calm else 10.0
    sent: dict[str, int] = {}
    errors: list[str] = []
    attack = asyncio.create_task(_attack(fleet, total, finished, calm_span / total, sent, errors))
    names, latencies = await _run_honest(fleet, "honest", honest)
    await attack
    for silo in fleet.silos:
        await fleet.bus_idle(silo)
    alive = fleet.operator.proc is not None and fleet.operator.proc.poll() is None and fleet.operator.proc.pid == pid
    row.crashes = 0 if alive else 1
    count_outcomes(row, await asyncio.to_thread(fleet.outcomes, names))
    changed = [name for name in calm_names if _reported(fleet.status(name)) != before[name]]
    wrong = _wrong(fleet, names)
    row.wrong_status = len(changed) + len(wrong)
    if changed or wrong:
        row.notes.append(f"changed finished installs {changed}, honest installs with a hostile mark {wrong}")
    calm_p50, honest_p50 = statistics.median(calm), statistics.median(latencies) if latencies else None
    row.times = {"calm_install_p50": round(calm_p50, 2),
                 "under_attack_install_p50": None if honest_p50 is None else round(honest_p50, 2),
                 "ratio": None if honest_p50 is None else round(honest_p50 / calm_p50, 2)}
    after = fleet.operator.metrics()
    outcomes: dict[str, float] = {}
    for key in after:
        if key.startswith("fleetlattice_bus_messages_total{") and 'outcome="' in key:
            outcome = key.split('outcome="', 1)[1].split('"', 1)[0]
            outcomes[outcome] = outcomes.get(outcome, 0.0) + after[key] - metrics_before.get(key, 0.0)
    denied = sum("permissions violation" in e.lower() for e in errors)
    row.notes.append(f"{total} hostile reports ({', '.join(f'{k} {v}' for k, v in sent.items())}) while {honest} "
                     f"honest installs ran; hub refused {denied} on other silos' subjects; operator's bus "
                     f"outcomes during the attack: {', '.join(f'{k} {v:g}' for k, v in sorted(outcomes.items()))}")
    return row
