"""The results as a Markdown table (what the README's Performance section shows) and as JSON (pure)."""

from __future__ import annotations

from typing import Any

# (scenario key, figure key, label, unit) in table order; a figure missing from a run is left out.
ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("streams_fleet_lattice", "p50_ms", "1. FleetStream create → stream exists, p50", "ms"),
    ("streams_fleet_lattice", "p95_ms", "1. FleetStream create → stream exists, p95", "ms"),
    ("streams_fleet_lattice", "p99_ms", "1. FleetStream create → stream exists, p99", "ms"),
    ("streams_fleet_lattice", "total_s", "1. all FleetStreams exist (first create → last stream)", "s"),
    ("streams_nack", "p50_ms", "2. NACK Stream create → stream exists, p50", "ms"),
    ("streams_nack", "p95_ms", "2. NACK Stream create → stream exists, p95", "ms"),
    ("streams_nack", "p99_ms", "2. NACK Stream create → stream exists, p99", "ms"),
    ("streams_nack", "total_s", "2. all NACK Streams exist", "s"),
    ("streams_ratio", "p50", "2. ratio Fleet Lattice / NACK, p50 (< 1 = faster)", "ratio"),
    ("streams_ratio", "p99", "2. ratio Fleet Lattice / NACK, p99", "ratio"),
    ("streams_ratio", "total", "2. ratio Fleet Lattice / NACK, total", "ratio"),
    ("installs", "p50_ms", "3. agent `done` → watcher sees Succeeded, p50", "ms"),
    ("installs", "p99_ms", "3. agent `done` → watcher sees Succeeded, p99", "ms"),
    ("installs", "api_writes_per_install", "3. operator API writes per install (3 progress + done)", ""),
    ("installs", "alone_p50_ms", "3. one install at a time: `done` → watcher sees Succeeded, p50", "ms"),
    ("installs", "alone_max_ms", "3. one install at a time: `done` → watcher sees Succeeded, max", "ms"),
    ("scale", "all_succeeded_s", "4. cold start → every install Succeeded", "s"),
    ("scale", "real_leaves_ready_s", "4. cold start → real leaves Ready", "s"),
    ("scale", "operator_peak_rss_mib", "4. operator peak RSS", "MiB"),
    ("scale", "api_requests", "4. operator API requests, cold start to all Succeeded", ""),
    ("scale", "api_requests_per_silo", "4. operator API requests per silo", ""),
    ("reload", "reload_s", "4. hub reload (slowest of 3): SiloLeaf create → servers loaded new config", "s"),
    ("reload", "leaf_connections_dropped", "4. leaf connections dropped by the reload", ""),
    ("reload", "agent_connections_dropped", "4. agent connections dropped by the reload", ""),
    ("burst", "publish_rate_per_s", "5. progress reports published", "msg/s"),
    ("burst", "end_to_end_rate_per_s", "5. progress reports applied to status", "msg/s"),
    ("burst", "backlog_mid_publish", "5. operator backlog mid-publish", "msgs"),
    ("burst", "backlog_at_publish_end", "5. operator backlog at publish end", "msgs"),
    ("burst", "drain_after_publish_s", "5. publish end → every install shows its last report", "s"),
    ("burst", "api_writes_per_install", "5. operator API writes per install during the burst", ""),
)

SIZES: dict[str, tuple[str, ...]] = {
    "streams_fleet_lattice": ("n",), "streams_nack": ("n",), "installs": ("n", "alone_n"),
    "scale": ("silos", "real_leaves"), "reload": ("silo_users", "hub_servers", "leaf_connections", "agent_connections"),
    "burst": ("messages", "silos"),
}


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:,}" if unit in ("", "msgs", "msg/s") and isinstance(value, int) else f"{value}"


def table(results: dict[str, Any]) -> str:
    scenarios = results["scenarios"]
    lines = ["| figure | value | unit | N |", "|---|---:|---|---|"]
    for scenario, key, label, unit in ROWS:
        figures = scenarios.get(scenario)
        if figures is None or key not in figures:
            continue
        sizes = ", ".join(f"{k}={figures[k]}" for k in SIZES.get(scenario, ()) if k in figures)
        lines.append(f"| {label} | {_fmt(figures[key], unit)} | {unit} | {sizes} |")
    for scenario, error in results.get("errors", {}).items():
        lines.append(f"| {scenario}: FAILED | {error} | | |")
    conditions = results["conditions"]
    lines.append("")
    lines.append("Conditions: " + ", ".join(f"{k} {v}" for k, v in conditions.items()))
    return "\n".join(lines)
