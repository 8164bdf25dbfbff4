"""The benchmarks' pure parts: percentiles, ratios, the profile summary and the README table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.audit import AuditLog
from bench.profile import top_frames
from bench.report import table
from bench.stats import latency_summary, percentile, ratio

from fleetlattice.api import defaults


def test_percentile_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # order of arrival does not matter


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_latency_summary_reports_milliseconds() -> None:
    summary = latency_summary([0.010, 0.020, 0.030, 0.040])
    assert summary == {"n": 4, "p50_ms": 20.0, "p95_ms": 40.0, "p99_ms": 40.0, "max_ms": 40.0}


def test_ratio_says_when_there_is_nothing_to_compare() -> None:
    assert ratio(50, 200) == 0.25
    assert ratio(1, 0) is None


def test_top_frames_counts_inclusive_samples_of_operator_frames_only() -> None:
    collapsed = "\n".join([
        "run (kopf/x.py:1);apply_hub (fleetlattice/hub_reconcile.py:80);hashpw (bcrypt/__init__.py:9) 6",
        "run (kopf/x.py:1);apply_hub (fleetlattice/hub_reconcile.py:80) 2",
        "run (kopf/x.py:1);select (selectors.py:1) 2",
    ])
    assert top_frames(collapsed) == [("apply_hub (fleetlattice/hub_reconcile.py:80)", 80.0)]
    assert top_frames("") == []


def test_table_lists_figures_with_their_sizes_and_failures() -> None:
    results = {
        "conditions": {"cores": 2, "mode": "quick"},
        "scenarios": {"streams_fleet_lattice": {"n": 10, "p50_ms": 85.7}, "streams_ratio": {"p50": 0.27}},
        "errors": {"burst": "WaitTimeout: timed out"},
    }
    text = table(results)
    assert "| 1. FleetStream create → stream exists, p50 | 85.7 | ms | n=10 |" in text
    assert "| 2. ratio Fleet Lattice / NACK, p50 (< 1 = faster) | 0.27 | ratio |  |" in text
    assert "| burst: FAILED | WaitTimeout: timed out | | |" in text
    assert "Conditions: cores 2, mode quick" in text
    assert "p95" not in text  # a figure the run did not produce is left out


def test_the_audit_log_counts_the_operators_new_requests_and_never_half_a_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps({"userAgent": "kopf/1.45"}) + "\n")
    audit = AuditLog(path)  # from here on
    line = {"operator": json.dumps({"userAgent": defaults.USER_AGENT}), "bench": json.dumps({"userAgent": "bench"})}
    with path.open("a") as log:
        log.write(line["operator"] + "\n" + line["bench"] + "\n" + line["operator"][:10])  # the last one unfinished
    assert audit.take_operator_requests() == 1
    with path.open("a") as log:
        log.write(line["operator"][10:] + "\n")
    assert audit.take_operator_requests() == 1
    assert audit.take_operator_requests() == 0
