"""The SiloInstall state machine: phases, retries, timeouts, late and invalid reports."""

from datetime import UTC, datetime, timedelta

import pytest

from fleetlattice.api.bus import request_id
from fleetlattice.api.siloinstall import HISTORY_LIMIT, SiloInstallSpec, SiloInstallStatus
from fleetlattice.logic.install_state import (
    adopt,
    agent_seen,
    apply_report,
    begin_attempt,
    begin_scrub,
    check_deadline,
    install_conditions,
    mark_published,
    needs_new_attempt,
    request_for,
    retry_due,
    scrub_request,
    transition_notices,
    unpublished,
)

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
UID = "0b7e2a4c-1111-2222-3333-444455556666"
SPEC = SiloInstallSpec(silo="ct-fac", version="v622", timeout="10m", retries=1, backoff="30s")


def requested(spec: SiloInstallSpec = SPEC, generation: int = 1) -> SiloInstallStatus:
    status = begin_attempt(SiloInstallStatus(), spec, UID, generation, T0)
    published = mark_published(status, status.request_id)
    assert published is not None
    return published


def test_first_attempt_is_reserved_then_published() -> None:
    status = begin_attempt(SiloInstallStatus(), SPEC, UID, 1, T0)
    assert (status.phase, status.attempt, status.request_id) == ("Pending", 1, f"{UID}-g1-a1")
    assert unpublished(status)
    request = request_for(status, SPEC)
    assert request.deadline == T0 + timedelta(minutes=10)
    assert request_for(status, SPEC) == request, "a republished request must be identical"
    published = mark_published(status, status.request_id)
    assert published is not None and published.phase == "Requested"
    assert not unpublished(published)


def test_mark_published_never_moves_a_later_phase_back() -> None:
    status = requested()
    progressed = apply_report(status, SPEC, "progress", {"requestId": status.request_id, "step": "a",
                                                         "index": 1, "total": 4}, T0).status
    assert progressed is not None
    assert mark_published(progressed, status.request_id) is None


def test_progress_then_done() -> None:
    status = requested()
    applied = apply_report(status, SPEC, "progress",
                           {"requestId": status.request_id, "step": "pull", "index": 2, "total": 4, "message": "ok"},
                           T0)
    assert applied.outcome == "applied"
    assert applied.status is not None
    status = applied.status
    assert (status.phase, status.progress.percent, status.progress_text) == ("InProgress", 50, "2/4 (50%)")
    done = apply_report(status, SPEC, "done", {"requestId": status.request_id, "pods": 6, "health": "ok",
                                               "gamma1": 14.134}, T0)
    assert done.status is not None
    assert (done.status.phase, done.status.result.pods, done.status.result.version) == ("Succeeded", 6, "v622")
    assert done.status.result.details == {"gamma1": 14.134}
    assert done.status.completed_at == T0
    assert [h.kind for h in done.status.history] == ["request", "progress", "done"]


def test_seed_message_without_request_id_completes_the_active_attempt() -> None:
    applied = apply_report(requested(), SPEC, "done", {"pods": 6, "health": "ok", "gamma1": 14.134}, T0)
    assert applied.status is not None and applied.status.phase == "Succeeded"


def test_reports_after_the_end_are_late() -> None:
    status = requested()
    done = apply_report(status, SPEC, "done", {"requestId": status.request_id, "pods": 1}, T0).status
    assert done is not None
    again = apply_report(done, SPEC, "progress", {"requestId": status.request_id, "step": "x"}, T0)
    assert (again.outcome, again.status) == ("late", None)


def test_report_for_an_attempt_not_stored_yet_is_early() -> None:
    """Attempts are published just before they are stored: such a report waits, it is not dropped."""
    status = requested()
    for generation, attempt in ((1, 2), (2, 1)):
        newer = apply_report(status, SPEC, "done", {"requestId": request_id(UID, generation, attempt)}, T0)
        assert (newer.outcome, newer.status) == ("early", None)
    fresh = apply_report(SiloInstallStatus(), SPEC, "done", {"requestId": status.request_id}, T0)
    assert fresh.outcome == "early"
    assert apply_report(status, SPEC, "done", {"requestId": "bus-7"}, T0).outcome == "late"


def test_report_for_an_older_attempt_is_late() -> None:
    status = requested()
    failed = apply_report(status, SPEC, "failed", {"requestId": status.request_id, "step": "s", "error": "boom"}, T0)
    assert failed.status is not None
    retry = begin_attempt(failed.status, SPEC, UID, 1, T0 + timedelta(minutes=1))
    old = apply_report(retry, SPEC, "done", {"requestId": status.request_id}, T0)
    assert old.outcome == "late"


@pytest.mark.parametrize("payload", [{"index": "three"}, {"pods": -1}, {"requestId": 5}, ["not", "an", "object"]])
def test_invalid_reports_change_nothing(payload: object) -> None:
    kind = "progress" if isinstance(payload, dict) and "index" in payload else "done"
    applied = apply_report(requested(), SPEC, kind, payload, T0)
    assert (applied.outcome, applied.status) == ("ignored-invalid", None)


def test_retryable_failure_schedules_a_retry_with_backoff() -> None:
    status = requested()
    failed = apply_report(status, SPEC, "failed", {"requestId": status.request_id, "step": "apply",
                                                   "error": "quota", "retryable": True}, T0).status
    assert failed is not None
    assert (failed.phase, failed.next_attempt_at) == ("Pending", T0 + timedelta(seconds=30))
    assert failed.last_error.step == "apply"
    assert not retry_due(failed, T0)
    assert retry_due(failed, T0 + timedelta(seconds=30))
    second = begin_attempt(failed, SPEC, UID, 1, T0 + timedelta(seconds=30))
    assert (second.attempt, second.request_id, second.started_at) == (2, f"{UID}-g1-a2", T0)
    second = mark_published(second, second.request_id)
    assert second is not None
    final = apply_report(second, SPEC, "failed", {"requestId": second.request_id, "step": "apply", "error": "quota"},
                         T0).status
    assert final is not None and final.phase == "Failed", "retries: 1 allows exactly one retry"


def test_non_retryable_failure_is_final() -> None:
    status = requested()
    failed = apply_report(status, SPEC, "failed", {"requestId": status.request_id, "step": "verify",
                                                   "error": "bad image", "retryable": False}, T0).status
    assert failed is not None
    assert (failed.phase, failed.next_attempt_at) == ("Failed", None)
    ready = install_conditions(failed, None, None)[0]
    assert (ready.status, ready.reason, ready.message) == ("False", "Failed", "bad image")


def test_timeout_retries_then_times_out() -> None:
    status = requested(SiloInstallSpec(silo="ct-fac", version="v1", timeout="1m", retries=0))
    spec = SiloInstallSpec(silo="ct-fac", version="v1", timeout="1m", retries=0)
    assert check_deadline(status, spec, T0 + timedelta(seconds=59)) is None
    timed_out = check_deadline(status, spec, T0 + timedelta(seconds=61))
    assert timed_out is not None and timed_out.phase == "TimedOut"
    assert check_deadline(timed_out, spec, T0 + timedelta(hours=1)) is None


def test_new_generation_starts_over() -> None:
    status = requested()
    assert not needs_new_attempt(status, 1)
    assert needs_new_attempt(status, 2)
    upgraded = begin_attempt(status, SPEC, UID, 2, T0)
    assert (upgraded.attempt, upgraded.request_id) == (1, f"{UID}-g2-a1")


def test_history_is_bounded() -> None:
    status = requested()
    for i in range(HISTORY_LIMIT * 2):
        applied = apply_report(status, SPEC, "progress", {"step": f"s{i}", "index": 1, "total": 2}, T0)
        assert applied.status is not None
        status = applied.status
    assert len(status.history) == HISTORY_LIMIT
    assert status.history[-1].step == f"s{HISTORY_LIMIT * 2 - 1}"


def test_scrub_round_trip() -> None:
    status = begin_scrub(requested(), UID, T0)
    message = scrub_request(status)
    assert (status.phase, message.request_id) == ("Scrubbing", f"{UID}-scrub")
    wrong = apply_report(status, SPEC, "scrubbed", {"requestId": "other"}, T0)
    assert wrong.outcome == "late"
    done = apply_report(status, SPEC, "scrubbed", {"requestId": message.request_id}, T0)
    assert done.status is not None and done.status.scrubbed_at == T0


def test_agent_connected_condition_does_not_change_as_the_heartbeat_ages() -> None:
    """The 5s timer rewrites status whenever a condition differs: an age in the message was a write per tick."""
    status = requested()
    young, old = install_conditions(status, True, 3.0), install_conditions(status, True, 41.0)
    assert young == old
    agent = next(c for c in young if c.type == "AgentConnected")
    assert (agent.status, agent.reason) == ("True", "Heartbeat")
    lost = next(c for c in install_conditions(status, False, None) if c.type == "AgentConnected")
    assert (lost.status, lost.reason) == ("False", "NoHeartbeat")


def test_a_request_published_by_hand_is_adopted_as_requested_with_nothing_to_publish() -> None:
    status = adopt(SiloInstallStatus(), SPEC, "bus-41", 1, T0)
    assert (status.phase, status.attempt, status.request_id, status.observed_generation) == ("Requested", 1,
                                                                                            "bus-41", 1)
    assert not unpublished(status) and not needs_new_attempt(status, 1)
    assert "on the bus (bus-41)" in status.history[0].message
    progressed = apply_report(status, SPEC, "progress", {"requestId": "bus-41", "step": "accepted"}, T0).status
    assert progressed is not None and progressed.phase == "InProgress"


def test_notices_tell_the_request_the_start_and_the_end_once() -> None:
    start = begin_attempt(SiloInstallStatus(), SPEC, UID, 1, T0)
    assert [n.reason for n in transition_notices(SiloInstallStatus(), start)] == ["Requested"]
    published = mark_published(start, start.request_id)
    assert published is not None and transition_notices(start, published) == []
    step = {"requestId": start.request_id, "step": "pull", "index": 1, "total": 2, "message": "ok"}
    pulled = apply_report(published, SPEC, "progress", step, T0).status
    assert pulled is not None
    assert [(n.type, n.reason) for n in transition_notices(published, pulled)] == [("Normal", "Started")]
    step2 = apply_report(pulled, SPEC, "progress", {**step, "step": "run", "index": 2}, T0).status
    assert step2 is not None and transition_notices(pulled, step2) == []  # steps live in status.history
    failed = apply_report(pulled, SPEC, "failed", {"requestId": start.request_id, "step": "pull",
                                                     "error": "image missing", "retryable": False}, T0).status
    assert failed is not None
    (notice,) = transition_notices(pulled, failed)
    assert (notice.type, notice.reason, notice.message) == ("Warning", "Failed", "image missing")


def test_a_start_and_its_end_stored_in_one_write_tell_both() -> None:
    """The bus applies a silo's reports in batches: under load the first progress and the done are one status
    write, and `kubectl describe` lacked the Started Event (an e2e failure)."""
    start = begin_attempt(SiloInstallStatus(), SPEC, UID, 1, T0)
    published = mark_published(start, start.request_id)
    assert published is not None
    status = published
    for report, fields in [("progress", {"step": "render", "index": 1, "total": 3}),
                           ("progress", {"step": "apply", "index": 2, "total": 3}),
                           ("done", {"pods": 6})]:
        status = apply_report(status, SPEC, report, {"requestId": start.request_id, **fields}, T0).status
        assert status is not None
    notices = transition_notices(published, status)
    assert [(n.reason, n.message) for n in notices][:1] == [("Started", "the silo's agent reports render")]
    assert [n.reason for n in notices] == ["Started", "Succeeded"]
    assert [n.reason for n in transition_notices(published, apply_report(
        published, SPEC, "done", {"requestId": start.request_id, "pods": 6}, T0).status)] == ["Succeeded"]


def test_agent_connected_is_not_claimed_false_before_a_heartbeat_could_have_come() -> None:
    """At a cold start every install was written AgentConnected=False on its first tick and True seconds later:
    two status writes per install for nothing. No heartbeat yet and a young attempt: no condition written."""
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    young = SiloInstallStatus(phase="Requested", requested_at=now - timedelta(seconds=5))
    old = SiloInstallStatus(phase="Requested", requested_at=now - timedelta(seconds=300))
    assert agent_seen(None, SiloInstallStatus(), now) is None
    assert agent_seen(None, young, now) is None
    assert agent_seen(None, old, now) is False
    assert agent_seen(3.0, young, now) is True
    assert agent_seen(90.0, young, now) is False
    assert [c.type for c in install_conditions(young, agent_seen(None, young, now), None)] == ["Ready"]
