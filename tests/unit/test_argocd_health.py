"""The Argo CD health check (charts/fleet-lattice/argocd/health.lua), run on Lua 5.1 as Argo CD runs it,
against status objects in tests/unit/golden/argocd/ (shaped like what the operator writes; to be replaced
by objects captured from e2e runs: keep the file names, or update EXPECTED)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import build_argocd
from localcluster.argocd import admin_health
from lupa import lua51  # Argo CD embeds gopher-lua, a Lua 5.1

from fleetlattice.api.kinds import KINDS

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "fleet-lattice"
SCRIPT = CHART / "argocd" / "health.lua"
GOLDEN = Path(__file__).resolve().parent / "golden" / "argocd"

# golden file -> (health status, substring of the message or "")
EXPECTED: dict[str, tuple[str, str]] = {
    "fleethub-ready": ("Healthy", "1 server(s) ready"),
    "fleethub-starting": ("Progressing", "1 of 3 servers ready"),
    "fleethub-restart-required": ("Progressing", "rolling the StatefulSet"),
    "fleethub-server-unhealthy": ("Degraded", "2 of 3 servers ready"),
    "fleethub-spec-changed": ("Progressing", "observe generation 2"),
    "siloleaf-connected": ("Healthy", "connected to eose-hub"),
    "siloleaf-not-connected": ("Progressing", "waiting for leaf forge"),
    "siloleaf-duplicate-silo": ("Degraded", "already belongs to SiloLeaf ct-fac"),
    "siloleaf-new": ("Progressing", "waiting for the operator"),
    "fleetstream-in-sync": ("Healthy", "matches the spec"),
    "fleetstream-immutable-field": ("Degraded", "storage cannot change"),
    "fleetstream-jetstream-error": ("Degraded", "insufficient resources"),
    "fleetstream-hub-unavailable": ("Progressing", "no servers available"),
    "siloinstall-requested": ("Progressing", "attempt 1"),
    "siloinstall-in-progress": ("Progressing", "2/4 (50%)"),
    "siloinstall-succeeded": ("Healthy", "v622 installed"),
    "siloinstall-failed": ("Degraded", "image pull failed"),
    "siloinstall-timed-out": ("Degraded", "timedout"),
    "siloinstall-retry-scheduled": ("Progressing", "next attempt"),
    "siloinstall-scrubbing": ("Progressing", "v622 installed"),
    "siloinstall-pending-no-leaf": ("Progressing", "no SiloLeaf"),
}


def assess(obj: dict[str, Any]) -> dict[str, str]:
    """Run the script the way Argo CD does: the resource as global `obj`, the script's return value is the health."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT.read_text())
    return {"status": result["status"], "message": result["message"]}


def load(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def test_every_golden_object_has_an_expectation() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_health_of_golden_object(name: str) -> None:
    status, message = EXPECTED[name]
    health = assess(load(name))
    assert health["status"] == status, health
    assert message in health["message"], health


def argocd_cm() -> dict[str, Any]:
    """argocd-cm as the chart's README makes it: an empty ConfigMap merge-patched with argocd/argocd-cm.yaml."""
    patch = yaml.safe_load((CHART / "argocd" / "argocd-cm.yaml").read_text())
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"}, **patch}


@pytest.fixture(scope="module")
def argocd() -> Path:
    """The cached Argo CD binary: built here if the cache lacks it (minutes, once; `.ci/run`'s cluster build has
    already made it), never skipped, so this check always runs."""
    return build_argocd()


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_argocd_itself_agrees_on_golden_object(name: str, argocd: Path) -> None:
    """The real Argo CD (`argocd admin settings resource-overrides health`, its own gopher-lua and script loading)
    gives what the lupa run expects."""
    status, message = EXPECTED[name]
    got = admin_health(load(name), argocd_cm(), argocd)
    assert got[0] == status, got
    assert message in got[1], got


def test_ready_true_but_generation_not_observed_is_progressing() -> None:
    obj = load("fleetstream-in-sync")
    obj["metadata"]["generation"] = 5
    assert assess(obj)["status"] == "Progressing"


def test_stale_ready_condition_is_progressing() -> None:
    """status.observedGeneration caught up, but the Ready condition still speaks of an older generation."""
    obj = load("siloinstall-succeeded")
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] = 2
    assert assess(obj)["status"] == "Progressing"


def test_ready_unknown_is_progressing() -> None:
    obj = load("siloleaf-connected")
    obj["status"]["conditions"][0].update(status="Unknown", reason="Probing", message="asking the hub")
    assert assess(obj) == {"status": "Progressing", "message": "asking the hub"}


def test_no_conditions_is_progressing() -> None:
    obj = load("fleethub-ready")
    del obj["status"]["conditions"]
    assert assess(obj)["status"] == "Progressing"


def test_argocd_cm_snippet_carries_the_script_for_every_kind() -> None:
    cm = yaml.safe_load((CHART / "argocd" / "argocd-cm.yaml").read_text())
    keys = {f"resource.customizations.health.fleet.lattice.dev_{kind}"
            for kind in (k.kind for k in KINDS)}
    assert set(cm["data"]) == keys
    for key in keys:
        assert cm["data"][key].strip() == SCRIPT.read_text().strip(), (
            f"{key} is stale: run `python charts/fleet-lattice/hack/sync.py`"
        )


@pytest.mark.parametrize("name", ["application.yaml", "applicationset.yaml"])
def test_readme_shows_the_argocd_documents_the_e2e_syncs(name: str) -> None:
    assert (CHART / "argocd" / name).read_text() in (REPO / "README.md").read_text(), (
        f"README's Argo CD section no longer shows argocd/{name} as tests/e2e/test_gitops.py syncs it")
