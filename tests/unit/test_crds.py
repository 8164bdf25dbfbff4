"""The committed crds/ are exactly what the models generate, and are valid structural schemas."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetlattice.api.crdgen import crd, write_crds
from fleetlattice.api.kinds import KINDS, Kind

REPO = Path(__file__).resolve().parents[2]


def test_committed_crds_match_models(tmp_path: Path) -> None:
    generated = {p.name: p.read_text() for p in write_crds(tmp_path)}
    committed = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    assert committed == generated, "crds/ is stale: run `fleetlattice crds` and commit the result"


def _walk(schema: dict[str, Any], path: str):
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_field_is_typed_and_described(kind: Kind) -> None:
    root = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for section in ("spec", "status"):
        for path, node in _walk(root["properties"][section], section):
            assert "$ref" not in node, f"{path} is not structural"
            assert "anyOf" not in node, f"{path} is not structural"
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
            if not path.endswith("[]"):
                assert node.get("description"), f"{kind.kind} {path} has no description"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_names_columns_and_subresources(kind: Kind) -> None:
    doc = crd(kind)
    names = doc["spec"]["names"]
    assert doc["metadata"]["name"] == f"{kind.plural}.fleet.lattice.dev"
    assert names["categories"] == ["fleet"]
    assert names["shortNames"] == [kind.short_name]
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions"} <= status.keys()
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert version["additionalPrinterColumns"][-1]["name"] == "Age"


def _columns(priority: int) -> dict[str, list[str]]:
    return {k.kind: [c["name"].upper() for c in crd(k)["spec"]["versions"][0]["additionalPrinterColumns"]
                     if c.get("priority", 0) <= priority] for k in KINDS}


def test_wide_columns_add_what_the_story_of_an_install_and_a_leaf_needs() -> None:
    wide = _columns(1)
    assert wide["SiloInstall"] == ["SILO", "VERSION", "PHASE", "PROGRESS", "PODS", "ATTEMPT", "STEP", "REQUEST",
                                   "STARTED", "FINISHED", "AGE"]
    assert wide["SiloLeaf"] == ["SILO", "HUB", "CONNECTED", "READY", "SINCE", "RTT", "HUB SERVER", "AGE"]


def test_design_printer_columns() -> None:
    columns = _columns(0)
    assert columns == {
        "FleetHub": ["READY", "VERSION", "LEAVES", "STREAMS", "AGE"],
        "SiloLeaf": ["SILO", "HUB", "CONNECTED", "READY", "AGE"],
        "FleetStream": ["STREAM", "KIND", "MESSAGES", "BYTES", "READY", "AGE"],
        "SiloInstall": ["SILO", "VERSION", "PHASE", "PROGRESS", "PODS", "AGE"],
        # Not in DESIGN.md's table, which predates the kind.
        "FleetUser": ["HUB", "ROLES", "READY", "AGE"],
    }


def test_cel_rules_and_immutability_are_in_the_schema() -> None:
    stream = next(k for k in KINDS if k.kind == "FleetStream")
    spec = crd(stream)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [v["rule"] for v in spec["x-kubernetes-validations"]]
    assert any("history" in r for r in rules)
    for field in ("name", "storage", "kind"):
        assert spec["properties"][field]["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    assert spec["properties"]["deletionPolicy"]["default"] == "Retain"


def test_crd_files_are_plain_yaml() -> None:
    for path in (REPO / "crds").glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["kind"] == "CustomResourceDefinition"
