"""Condition bookkeeping and hub status from monitoring snapshots."""

from datetime import UTC, datetime

from fleetlattice.logic.conditions import Cond, condition_notices, merge_conditions
from fleetlattice.logic.hub_status import ServerSnapshot, hub_status
from fleetlattice.logic.times import parse_time


def test_transition_time_moves_only_on_status_change() -> None:
    first = merge_conditions(None, [Cond.false("Ready", "Starting")], 1, now="t1")
    same = merge_conditions(first, [Cond.false("Ready", "StillStarting", "x")], 2, now="t2")
    assert same[0]["lastTransitionTime"] == "t1"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("StillStarting", 2)
    flipped = merge_conditions(same, [Cond.true("Ready", "Up")], 2, now="t3")
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_ready_is_first_and_others_are_kept() -> None:
    merged = merge_conditions([{"type": "Degraded", "status": "False", "reason": "Ok"}],
                              [Cond.true("Ready", "Up")], 1, now="t")
    assert [c["type"] for c in merged] == ["Ready", "Degraded"]


def test_a_changed_status_or_reason_is_one_event_a_new_message_none() -> None:
    connected = merge_conditions(None, [Cond.true("Connected", "LeafConnected", "rtt 1ms"),
                                        Cond.true("Ready", "LeafConnected", "rtt 1ms")], 1)
    (notice,) = condition_notices(None, connected)  # Ready follows Connected for the same reason: one Event
    assert (notice.type, notice.reason) == ("Normal", "LeafConnected")
    rtt = merge_conditions(connected, [Cond.true("Connected", "LeafConnected", "rtt 2ms")], 1)
    assert condition_notices(connected, rtt) == []
    dropped = merge_conditions(rtt, [Cond.false("Connected", "LeafNotConnected", "gone"),
                                     Cond.false("Ready", "LeafNotConnected", "gone")], 1)
    (notice,) = condition_notices(rtt, dropped)
    assert notice.reason == "LeafNotConnected"


def test_a_new_object_starting_up_is_no_event_a_problem_is() -> None:
    starting = merge_conditions(None, [Cond.false("Connected", "LeafNotConnected", "waiting"),
                                       Cond.false("Ready", "LeafNotConnected", "waiting")], 1)
    assert condition_notices(None, starting) == []
    refused = merge_conditions(None, [Cond.false("Ready", "DuplicateSilo", "silo taken")], 1)
    assert [(n.type, n.reason) for n in condition_notices(None, refused)] == [("Warning", "DuplicateSilo")]
    up = merge_conditions(starting, [Cond.true("Connected", "LeafConnected"), Cond.true("Ready", "LeafConnected")], 1)
    assert [n.reason for n in condition_notices(starting, up)] == ["LeafConnected"]


def test_parse_go_nanosecond_times() -> None:
    assert parse_time("2026-11-21T16:58:00.829769536Z") == datetime(2026, 11, 21, 16, 58, 0, 829769, tzinfo=UTC)
    assert parse_time("2026-11-21T16:58:00Z") == datetime(2026, 11, 21, 16, 58, tzinfo=UTC)


def _server(pod: str, loaded: str, healthy: bool = True) -> ServerSnapshot:
    return ServerSnapshot(pod, healthy, varz={"version": "2.15.1", "config_load_time": loaded,
                                              "config_digest": "sha256:abc"},
                          leafz={"leafs": [{"name": "ct-fac-leaf"}]}, jsz={"streams": 5, "messages": 3})


CHANGED = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_ready_when_every_server_loaded_the_new_config() -> None:
    fields, conds = hub_status(1, [_server("hub-0", "2026-11-21T12:00:01.5Z")], CHANGED, False)
    assert (fields["ready"], fields["version"], fields["leafConnections"], fields["streams"]) == ("1/1", "2.15.1", 1, 5)
    assert {c.type: c.status for c in conds} == {"Ready": "True", "Progressing": "False", "Degraded": "False"}


def test_reload_pending_is_progressing_not_ready() -> None:
    _, conds = hub_status(1, [_server("hub-0", "2026-11-21T11:59:00Z")], CHANGED, False)
    ready = next(c for c in conds if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "ReloadPending")


def test_unhealthy_server_is_degraded() -> None:
    servers = [_server("hub-0", "2026-11-21T12:00:01Z"), _server("hub-1", "", healthy=False)]
    fields, conds = hub_status(3, servers, CHANGED, False)
    by_type = {c.type: c for c in conds}
    assert fields["ready"] == "1/3"
    assert by_type["Degraded"].status == "True" and "hub-1" in by_type["Degraded"].message
    assert by_type["Ready"].status == "False"


def test_restart_required_is_reported() -> None:
    _, conds = hub_status(1, [_server("hub-0", "2026-11-21T12:00:01Z")], CHANGED, True)
    assert next(c for c in conds if c.type == "Progressing").reason == "RestartRequired"
