"""A silo cut off: its leaf pod's traffic dropped (to and from the hub, and its agent's connection to it) for
longer than the install's timeout while the agent finishes its work, then the network is back. The install
must end in the phase the design defines (TimedOut: the agent's late `done` is for a finished request and
changes nothing), and its AgentConnected condition must show the gap."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..harness import condition, wait_for
from .counting import FaultRow
from .fleet import FaultFleet

# AgentConnected turns False once the heartbeat is older than 60 s (logic/install_state.py), so the cut lasts
# past that and past the install's timeout: both must show while the silo is away.
TIMEOUT_SECONDS = 75
CUT_DEADLINE_SECONDS = TIMEOUT_SECONDS + 90
RECONNECT_SECONDS = 180
# A FLATTICE-* chain: the cluster's `down` sweeps it should this process die before it removes it.
CHAIN = "FLATTICE-FAULT-CUT"
HOOKS = ("INPUT", "OUTPUT", "FORWARD")


def _iptables(*args: str, check: bool = True) -> None:
    subprocess.run(["iptables", "-w", *args], check=check, capture_output=True)


@contextmanager
def cut_off(ip: str) -> Iterator[None]:
    """Every packet to or from `ip` dropped: the host's (the agent's) and the bridge's (the hub's)."""
    _iptables("-N", CHAIN)
    try:
        for direction in ("-s", "-d"):
            _iptables("-A", CHAIN, direction, ip, "-j", "DROP")
        for hook in HOOKS:
            _iptables("-I", hook, "1", "-j", CHAIN)
        yield
    finally:
        for hook in HOOKS:
            _iptables("-D", hook, "-j", CHAIN, check=False)
        _iptables("-F", CHAIN, check=False)
        _iptables("-X", CHAIN, check=False)


@dataclass
class ConditionLog:
    """When an install's AgentConnected condition was seen to change (monotonic clock)."""

    changes: list[tuple[float, str]] = field(default_factory=list)

    def record(self, obj: dict[str, object]) -> None:
        value = condition(obj, "AgentConnected").get("status", "")
        if not self.changes or self.changes[-1][1] != value:
            self.changes.append((time.monotonic(), value))

    def first(self, value: str, after: float) -> float | None:
        return next((t for t, v in self.changes if v == value and t >= after), None)


def _one_cut(fleet: FaultFleet, row: FaultRow, rep: int, gaps: dict[str, list[float]]) -> None:
    silo = fleet.silos[rep % len(fleet.silos)]
    name, release = f"{silo}-cut{rep}", fleet.workdir / f"release-cut-{rep}"
    fleet.install(name, silo, timeout=f"{TIMEOUT_SECONDS}s", retries=0, waitFile=str(release))
    log = ConditionLog()

    def seen(after: float, phase: str | None = None, connected: str | None = None) -> bool:
        """Records the condition; true once the install is in `phase` and AgentConnected was `connected`
        at some moment since `after`."""
        obj = fleet.get(name)
        log.record(obj)
        return ((phase is None or (obj.get("status") or {}).get("phase") == phase)
                and (connected is None or log.first(connected, after) is not None))

    wait_for(lambda: (fleet.status(name).get("progress") or {}).get("step") == "apply", 120, f"{name} at apply")
    wait_for(lambda: seen(0.0, connected="True"), 60, "AgentConnected True")
    with cut_off(fleet.leaf_pod_ip(silo)):
        cut = time.monotonic()
        release.touch()  # the agent finishes while away: its `done` cannot get out
        wait_for(lambda: seen(cut, "TimedOut", "False"), CUT_DEADLINE_SECONDS, f"{name} TimedOut, agent shown away",
                 interval=1)
        restored = time.monotonic()
    try:
        wait_for(lambda: seen(restored, connected="True"), RECONNECT_SECONDS,
                 "AgentConnected True again", interval=1)
        asyncio.run(fleet.bus_idle(silo))
    except AssertionError as error:
        row.notes.append(f"{name}: {error}")
    final = fleet.status(name).get("phase")
    away, back = log.first("False", cut), log.first("True", restored)
    if final != "TimedOut" or away is None or back is None:
        row.undefined += 1
        row.notes.append(f"{name}: final phase {final}, AgentConnected changes {log.changes}")
    runs = {o.name: o.runs for o in fleet.outcomes([name])}[name]
    row.installs += 1
    row.duplicated += runs > 1
    gaps["cut"].append(round(restored - cut, 1))
    if away is not None:
        gaps["cut_to_agent_shown_away"].append(round(away - cut, 1))
    if back is not None:
        gaps["back_to_agent_shown_connected"].append(round(back - restored, 1))


def leaf_cut_off(fleet: FaultFleet, repetitions: int) -> FaultRow:
    row = FaultRow("leaf + agent cut off past the timeout", repetitions)
    gaps: dict[str, list[float]] = {"cut": [], "cut_to_agent_shown_away": [], "back_to_agent_shown_connected": []}
    for rep in range(repetitions):
        _one_cut(fleet, row, rep, gaps)
    row.times = {key: (max(values) if values else None) for key, values in gaps.items()}
    row.notes.append(f"install timeout {TIMEOUT_SECONDS}s, retries 0: defined phase TimedOut; times are the max")
    return row
