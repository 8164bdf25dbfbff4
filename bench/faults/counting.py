"""The fault suite's counts and their verdict (pure): what each fault counted, which of its counts the issue
demands to be zero, and the Markdown table the README's Reliability section shows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

FINAL_PHASES = frozenset({"Succeeded", "Failed", "TimedOut"})

# Every count of a FaultRow that must be 0 (a time is printed, never judged).
ZERO_COUNTS = ("lost", "duplicated", "stuck", "undefined", "crashes", "wrong_status", "accepted")


@dataclass
class FaultRow:
    fault: str
    repetitions: int
    installs: int = 0
    lost: int = 0  # ended other than Succeeded with the result its agent reported, or never ran
    duplicated: int = 0  # the agent ran the plan more than once for one install
    stuck: int = 0  # not in a final phase by the deadline
    undefined: int = 0  # (cut-off) a phase other than the one the design defines for it
    crashes: int = 0  # the operator process died
    wrong_status: int = 0  # a status changed by a report that must not change it
    accepted: int = 0  # (spoofs) an attempt the hub or a leaf let through
    times: dict[str, float | None] = field(default_factory=dict)  # seconds (or a ratio), printed only
    notes: list[str] = field(default_factory=list)

    def failures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in ZERO_COUNTS if getattr(self, name)}


@dataclass(frozen=True)
class Outcome:
    """What one install came to: its phase and result pods as the API shows them, and how often its plan ran."""

    name: str
    phase: str
    pods: int | None
    expected_pods: int
    runs: int


def count_outcomes(row: FaultRow, outcomes: Iterable[Outcome]) -> None:
    """Adds the installs' lost / duplicated / stuck counts to `row`."""
    for outcome in outcomes:
        row.installs += 1
        if outcome.phase not in FINAL_PHASES:
            row.stuck += 1
        elif outcome.phase != "Succeeded" or outcome.pods != outcome.expected_pods or outcome.runs == 0:
            row.lost += 1
        if outcome.runs > 1:
            row.duplicated += 1


def runs_per_install(lines: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """The agents' run logs (one record per run of the plan) counted by install name."""
    return Counter(str(line["install"]) for line in lines)


def verdict(rows: Iterable[FaultRow]) -> dict[str, dict[str, int]]:
    """fault -> its nonzero must-be-zero counts; empty when every demanded zero holds."""
    return {row.fault: failed for row in rows if (failed := row.failures())}


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value}"


def table(rows: list[FaultRow], conditions: Mapping[str, Any]) -> str:
    time_keys = list(dict.fromkeys(key for row in rows for key in row.times))
    header = ["fault", "repetitions", "installs", *ZERO_COUNTS]
    lines = ["| " + " | ".join(header) + " | times (s) |", "|" + "---|" * (len(header) + 1)]
    for row in rows:
        times = "; ".join(f"{key} {_cell(row.times[key])}" for key in time_keys if key in row.times)
        counts = [str(getattr(row, name)) for name in ZERO_COUNTS]
        lines.append(f"| {row.fault} | {row.repetitions} | {row.installs} | " + " | ".join(counts)
                     + f" | {times} |")
    notes = [f"- {row.fault}: {note}" for row in rows for note in row.notes]
    if notes:
        lines += ["", *notes]
    lines += ["", "Conditions: " + ", ".join(f"{k} {v}" for k, v in conditions.items())]
    return "\n".join(lines)


def as_json(rows: list[FaultRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]
