"""The Grafana dashboard only charts series the operator exports, and covers the seed's panels."""

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import fleetlattice.clients.metrics  # noqa: F401  (registers the operator's metrics)

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "fleet-lattice" / "dashboards" / "fleet-lattice.json"


def exported_series() -> set[str]:
    names = set()
    for metric in REGISTRY.collect():
        if metric.name.startswith("fleetlattice_"):
            names |= {metric.name, f"{metric.name}_total", f"{metric.name}_bucket", f"{metric.name}_count",
                      f"{metric.name}_sum"}
    return names


def test_every_queried_series_is_exported() -> None:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"fleetlattice_\w+", e)}
    assert used, "the dashboard queries nothing"
    assert used <= exported_series(), f"not exported by the operator: {sorted(used - exported_series())}"


def test_seed_panels_are_there() -> None:
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for panel in ("publish rate", "storage", "consumer lag"):
        assert panel in titles
