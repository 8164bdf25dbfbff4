"""The fault suite's pure part: how installs are counted lost, duplicated or stuck, and the verdict that
makes `python -m bench.faults` fail."""

from __future__ import annotations

from bench.faults.counting import FaultRow, Outcome, count_outcomes, runs_per_install, table, verdict


def _row(*outcomes: Outcome) -> FaultRow:
    row = FaultRow("operator SIGKILL mid-install", 1)
    count_outcomes(row, outcomes)
    return row


def test_an_install_that_succeeded_once_with_its_own_result_counts_nothing() -> None:
    row = _row(Outcome("a", "Succeeded", 3, 3, 1))
    assert (row.installs, row.failures()) == (1, {})


def test_lost_duplicated_and_stuck_are_told_apart() -> None:
    row = _row(
        Outcome("failed", "Failed", None, 1, 1),
        Outcome("timed-out", "TimedOut", None, 1, 1),
        Outcome("wrong-result", "Succeeded", 9, 2, 1),  # another install's report applied to it
        Outcome("never-ran", "Succeeded", 4, 4, 0),
        Outcome("twice", "Succeeded", 5, 5, 2),
        Outcome("waiting", "InProgress", None, 6, 1),
        Outcome("never-requested", "", None, 7, 0),
    )
    assert row.installs == 7
    assert row.failures() == {"lost": 4, "duplicated": 1, "stuck": 2}


def test_runs_are_counted_from_the_agents_run_logs_by_install() -> None:
    lines = [{"install": "a", "requestId": "r1"}, {"install": "b", "requestId": "r2"},
             {"install": "a", "requestId": "r3"}]  # a retry with a new requestId is a second run too
    assert runs_per_install(lines) == {"a": 2, "b": 1}


def test_the_verdict_names_each_nonzero_count_and_ignores_times() -> None:
    calm = FaultRow("hub pod deleted mid-install", 3, installs=6, times={"fault_to_all_final_max": 99.0})
    spoofed = FaultRow("spoof attempts", 100, accepted=2)
    assert verdict([calm, spoofed]) == {"spoof attempts": {"accepted": 2}}
    assert verdict([calm]) == {}


def test_the_table_has_a_row_per_fault_its_times_and_notes() -> None:
    row = FaultRow("API server restarted mid-install", 1, installs=2, times={"outage_max": 4.2}, notes=["note"])
    text = table([row], {"cores": 2})
    assert "| API server restarted mid-install | 1 | 2 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | outage_max 4.2 |" in text
    assert "- API server restarted mid-install: note" in text
    assert text.endswith("Conditions: cores 2")
