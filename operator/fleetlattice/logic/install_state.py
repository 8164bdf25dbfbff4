"""The SiloInstall state machine (pure): every phase change an install can go through, as
functions from (status, input, now) to a new status. The I/O layers only load, call, store.

    Pending -> Requested -> InProgress -> Succeeded | Failed | TimedOut     (Scrubbing on delete)

A retryable failure or a timeout with retries left goes back to Pending with nextAttemptAt;
the next attempt gets a new requestId, so late reports of the old attempt are recognised."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from fleetlattice.api.base import duration_seconds
from fleetlattice.api.bus import attempt_of, request_id, scrub_request_id
from fleetlattice.api.messages import (
    AGENT_REPORTS,
    InstallDone,
    InstallFailed,
    InstallProgress,
    InstallRequest,
    ScrubRequest,
)
from fleetlattice.api.siloinstall import (
    FINAL_PHASES,
    HISTORY_LIMIT,
    HistoryEntry,
    InstallError,
    InstallResult,
    Progress,
    SiloInstallSpec,
    SiloInstallStatus,
)
from fleetlattice.logic.conditions import Cond, Notice, NotReady

ACTIVE_PHASES = frozenset({"Pending", "Requested", "InProgress"})
BusOutcome = Literal["applied", "ignored-invalid", "unknown-request", "late", "early"]


def _history(status: SiloInstallStatus, entry: HistoryEntry) -> list[HistoryEntry]:
    return [*status.history, entry][-HISTORY_LIMIT:]


def _progress_text(progress: Progress | None, phase: str) -> str:
    if phase == "Succeeded":
        return "done"
    if progress is None or not progress.total:
        return ""
    return f"{progress.index}/{progress.total} ({progress.percent}%)"


def needs_new_attempt(status: SiloInstallStatus, generation: int) -> bool:
    """A new spec generation always starts over at attempt 1."""
    return status.observed_generation != generation or not status.request_id


def awaits_attempt(body: Mapping[str, Any]) -> bool:
    """Whether a SiloInstall as the watch has it stores no attempt of its current spec yet (needs_new_attempt on
    the raw object, so the many watch events of status writes cost no parsing)."""
    status = body.get("status") or {}
    return status.get("observedGeneration") != body["metadata"].get("generation") or not status.get("requestId")


def begin_attempt(
    status: SiloInstallStatus, spec: SiloInstallSpec, uid: str, generation: int, now: datetime
) -> SiloInstallStatus:
    """The next attempt (phase Pending until InstallStore has published it, Requested as stored)."""
    same_generation = status.observed_generation == generation
    attempt = status.attempt + 1 if same_generation else 1
    rid = request_id(uid, generation, attempt)
    return status.model_copy(
        update={
            "observed_generation": generation,
            "phase": "Pending",
            "attempt": attempt,
            "request_id": rid,
            "requested_at": now,
            "started_at": status.started_at if same_generation and status.started_at else now,
            "completed_at": None,
            "next_attempt_at": None,
            "progress": None,
            "progress_text": "",
            "result": None if not same_generation else status.result,
            "last_error": None if not same_generation else status.last_error,
            "history": _history(
                status,
                HistoryEntry(time=now, attempt=attempt, kind="request", message=f"requested {spec.version} ({rid})"),
            ),
        }
    )


def adopt(status: SiloInstallStatus, spec: SiloInstallSpec, rid: str, generation: int,
          now: datetime) -> SiloInstallStatus:
    """Attempt 1 of a SiloInstall that records a request published by hand: the agent already has it, so it
    starts Requested under the agent's requestId, with nothing to publish."""
    entry = HistoryEntry(time=now, attempt=1, kind="request", message=f"requested {spec.version} on the bus ({rid})")
    return status.model_copy(update={"observed_generation": generation, "phase": "Requested", "attempt": 1,
                                     "request_id": rid, "requested_at": now, "started_at": now,
                                     "history": _history(status, entry)})


def unpublished(status: SiloInstallStatus) -> bool:
    """An attempt reserved in status whose request may not have reached JetStream yet."""
    return status.phase == "Pending" and status.next_attempt_at is None and bool(status.request_id)


def request_for(status: SiloInstallStatus, spec: SiloInstallSpec) -> InstallRequest:
    """The request of the reserved attempt, rebuilt identically each time (same requestId, same deadline)."""
    assert status.requested_at is not None
    deadline = status.requested_at + timedelta(seconds=duration_seconds(spec.timeout))
    return InstallRequest(request_id=status.request_id, silo=spec.silo, version=spec.version, params=spec.params,
                          attempt=status.attempt, deadline=deadline)


def mark_published(status: SiloInstallStatus, rid: str) -> SiloInstallStatus | None:
    """Pending -> Requested once the request is stored in JetStream; never moves a later phase back."""
    if status.request_id != rid or status.phase != "Pending":
        return None
    return status.model_copy(update={"phase": "Requested"})


@dataclass(frozen=True)
class Applied:
    outcome: BusOutcome
    status: SiloInstallStatus | None = None
    detail: str = ""


# The doubling backoff stops growing here: ten doublings of a long backoff would overflow a datetime.
MAX_RETRY_WAIT_SECONDS = 30 * 86400


def _retry_or_final(
    status: SiloInstallStatus, spec: SiloInstallSpec, now: datetime, final_phase: str, retryable: bool
) -> dict[str, Any]:
    if retryable and status.attempt <= spec.retries:
        wait = min(duration_seconds(spec.backoff) * 2 ** (status.attempt - 1), MAX_RETRY_WAIT_SECONDS)
        return {"phase": "Pending", "next_attempt_at": now + timedelta(seconds=wait)}
    return {"phase": final_phase, "completed_at": now, "next_attempt_at": None}


def apply_report(status: SiloInstallStatus, spec: SiloInstallSpec, kind: str, payload: Any, now: datetime) -> Applied:
    """One agent report (progress/done/failed/scrubbed), already JSON-decoded. A report without
    requestId (the seeds' tools) applies to the current attempt."""
    model = AGENT_REPORTS.get(kind)
    if model is None or not isinstance(payload, dict):
        return Applied("ignored-invalid", detail=f"not a known report object on .{kind}")
    try:
        report = model.model_validate(payload)
    except ValidationError as exc:
        return Applied("ignored-invalid", detail=f"invalid {kind}: {exc.errors()[0]['msg']}")
    rid = getattr(report, "request_id", None)
    if kind == "scrubbed":
        if status.phase != "Scrubbing" or (rid and rid != status.scrub_request_id):
            return Applied("late", detail="no scrub is pending")
        return Applied(
            "applied",
            status.model_copy(
                update={
                    "scrubbed_at": now,
                    "history": _history(status, HistoryEntry(time=now, attempt=status.attempt, kind="scrubbed")),
                }
            ),
        )
    if rid and rid != status.request_id:
        # The router only hands over reports whose requestId belongs to this install. An attempt is published
        # just before it is stored: a report of one newer than the stored is early (the write is on its way, or
        # an operator killed in between makes it again, same requestId), never to be dropped as late.
        if _newer_attempt(rid, status):
            return Applied("early", detail=f"report for {rid}, whose attempt is not stored yet")
        return Applied("late", detail=f"report for {rid}, current attempt is {status.request_id or 'none'}")
    if status.phase not in ACTIVE_PHASES or not status.request_id or status.next_attempt_at is not None:
        return Applied("late", detail=f"install is {status.phase}")
    return Applied("applied", _transition(status, spec, report, now))


def _newer_attempt(rid: str, status: SiloInstallStatus) -> bool:
    reported = attempt_of(rid)
    stored = attempt_of(status.request_id) if status.request_id else (0, 0)
    return reported is not None and stored is not None and reported > stored


def _transition(status: SiloInstallStatus, spec: SiloInstallSpec, report: Any, now: datetime) -> SiloInstallStatus:
    update: dict[str, Any]
    if isinstance(report, InstallProgress):
        percent = round(100 * report.index / report.total) if report.total else 0
        progress = Progress(
            step=report.step, index=report.index, total=report.total, percent=min(percent, 100), message=report.message
        )
        update = {"phase": "InProgress", "progress": progress, "progress_text": _progress_text(progress, "InProgress")}
        entry = HistoryEntry(
            time=now, attempt=status.attempt, kind="progress", step=report.step, message=report.message
        )
    elif isinstance(report, InstallDone):
        extra = dict(report.model_extra or {})
        result = InstallResult(
            version=report.version or spec.version, pods=report.pods, health=report.health or "", details=extra
        )
        update = {
            "phase": "Succeeded",
            "result": result,
            "completed_at": now,
            "progress_text": "done",
            "last_error": None,
        }
        entry = HistoryEntry(
            time=now,
            attempt=status.attempt,
            kind="done",
            message=f"pods={report.pods} health={report.health or ''}".strip(),
        )
    else:
        assert isinstance(report, InstallFailed)
        update = {
            "last_error": InstallError(step=report.step, error=report.error, retryable=report.retryable),
            **_retry_or_final(status, spec, now, "Failed", report.retryable),
        }
        entry = HistoryEntry(time=now, attempt=status.attempt, kind="failed", step=report.step, message=report.error)
    return status.model_copy(update={**update, "history": _history(status, entry)})


def check_deadline(status: SiloInstallStatus, spec: SiloInstallSpec, now: datetime) -> SiloInstallStatus | None:
    """TimedOut (or a retry) once the current attempt outlived spec.timeout."""
    if status.phase not in ACTIVE_PHASES or status.next_attempt_at or status.requested_at is None:
        return None
    if now < status.requested_at + timedelta(seconds=duration_seconds(spec.timeout)):
        return None
    entry = HistoryEntry(time=now, attempt=status.attempt, kind="timeout", message=f"no result within {spec.timeout}")
    update = _retry_or_final(status, spec, now, "TimedOut", retryable=True)
    return status.model_copy(update={**update, "history": _history(status, entry)})


def retry_due(status: SiloInstallStatus, now: datetime) -> bool:
    return status.phase == "Pending" and status.next_attempt_at is not None and now >= status.next_attempt_at


def begin_scrub(status: SiloInstallStatus, uid: str, now: datetime) -> SiloInstallStatus:
    rid = scrub_request_id(uid)
    return status.model_copy(
        update={
            "phase": "Scrubbing",
            "scrub_request_id": rid,
            "history": _history(status, HistoryEntry(time=now, attempt=status.attempt, kind="scrub")),
        }
    )


def scrub_request(status: SiloInstallStatus) -> ScrubRequest:
    """The scrub message of an install in phase Scrubbing, rebuilt identically each time."""
    return ScrubRequest(request_id=status.scrub_request_id, reason="SiloInstall deleted")


# An agent whose last FLEET_STATE write is older than this counts as not connected.
HEARTBEAT_FRESH_SECONDS = 60.0


def agent_seen(heartbeat_age: float | None, status: SiloInstallStatus, now: datetime) -> bool | None:
    """Whether the silo's agent is alive for the AgentConnected condition; None (no condition written yet) while
    no heartbeat has been seen and the attempt is younger than a heartbeat period: at a cold start every
    install otherwise went AgentConnected False and then True seconds later, two status writes for nothing."""
    if heartbeat_age is not None:
        return heartbeat_age < HEARTBEAT_FRESH_SECONDS
    if status.requested_at is None or (now - status.requested_at).total_seconds() < HEARTBEAT_FRESH_SECONDS:
        return None
    return False


def install_conditions(status: SiloInstallStatus, agent_seen: bool | None, heartbeat_age: float | None,
                       blocked: NotReady | None = None) -> list[Cond]:
    """Every condition of a SiloInstall; InstallStore is their one writer. `blocked` says why an active
    install cannot move on (hub unreachable, no SiloLeaf): Ready then names that reason, and says the same
    on every tick, so a hub outage costs one status write, not one per tick."""
    conds: list[Cond] = []
    phase = status.phase
    if blocked is not None and phase not in FINAL_PHASES:
        conds.append(blocked.condition())
    elif phase == "Succeeded":
        conds.append(Cond.true("Ready", "Succeeded", f"{status.result.version if status.result else ''} installed"))
    elif phase in FINAL_PHASES:
        error = status.last_error.error if status.last_error else ""
        conds.append(Cond.false("Ready", phase, error or f"install {phase.lower()}"))
    elif status.next_attempt_at is not None:
        conds.append(
            Cond.false(
                "Ready",
                "RetryScheduled",
                f"attempt {status.attempt} failed; next attempt at {status.next_attempt_at.isoformat()}",
            )
        )
    else:
        conds.append(Cond.false("Ready", phase, f"attempt {status.attempt}: {status.progress_text or phase}"))
    if agent_seen is not None:
        if agent_seen:
            # Not the age itself: a message that changes every tick would be a status write every tick.
            conds.append(Cond.true("AgentConnected", "Heartbeat", "the silo's agent wrote FLEET_STATE within the last "
                                   f"{HEARTBEAT_FRESH_SECONDS:.0f}s"))
        else:
            conds.append(
                Cond.false("AgentConnected", "NoHeartbeat", "no recent heartbeat from the silo's agent in FLEET_STATE")
            )
    return conds


def dump(status: SiloInstallStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def transition_notices(old: SiloInstallStatus, new: SiloInstallStatus) -> list[Notice]:
    """What an install's stored change tells a human: each new attempt, that the agent started, and how it
    ended. Not each step: those are in status.history, and every Event is an API write (at 100 installs
    finishing at once, Events cost about 3.5 s of done -> Succeeded p50; README, Performance)."""
    notices: list[Notice] = []
    if new.request_id and new.request_id != old.request_id:
        notices.append(Notice("Normal", "Requested", f"attempt {new.attempt}: requestId {new.request_id}"))
    # The attempt's first progress, whatever else the same write stored: under load a batch of reports takes an
    # install from Requested to Succeeded in one write, and the story must not depend on batch boundaries.
    if new.progress is not None and old.progress is None:
        first = next((h.step for h in new.history if h.attempt == new.attempt and h.kind == "progress" and h.step),
                     new.progress.step)
        notices.append(Notice("Normal", "Started", f"the silo's agent reports {first}"))
    if new.phase != old.phase and new.phase in FINAL_PHASES:
        if new.phase == "Succeeded":
            result = new.result
            detail = f"pods={result.pods} health={result.health}" if result else ""
            notices.append(Notice("Normal", "Succeeded", f"{new.result.version if result else ''} {detail}".strip()))
        else:
            error = new.last_error.error if new.last_error else ""
            notices.append(Notice("Warning", new.phase, error or "no result within the attempt's timeout"))
    elif new.phase != old.phase and new.phase == "Scrubbing":
        notices.append(Notice("Normal", "Scrubbing", "asked the silo to remove the install"))
    if new.scrubbed_at and not old.scrubbed_at:
        notices.append(Notice("Normal", "Scrubbed", "the silo confirmed the scrub"))
    return notices
