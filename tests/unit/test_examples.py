"""Every example in examples/ is a valid resource of one of our kinds."""

from pathlib import Path

import pytest
import yaml

from fleetlattice.api.kinds import API_VERSION, KINDS

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
SPEC_MODELS = {k.kind: k.spec for k in KINDS}


def _documents():
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")


@pytest.mark.parametrize("doc", list(_documents()))
def test_example_loads_through_its_model(doc: dict) -> None:
    assert doc["apiVersion"] == API_VERSION
    SPEC_MODELS[doc["kind"]].model_validate(doc["spec"])


def test_seed_topology_is_complete() -> None:
    names = {(d.values[0]["kind"], d.values[0]["metadata"]["name"]) for d in _documents()}
    assert {("FleetHub", "eose-hub"), ("SiloLeaf", "ct-fac"), ("SiloLeaf", "msclo"), ("SiloLeaf", "forge"),
            ("SiloInstall", "ct-fac-v622")} <= names
    streams = {d.values[0]["spec"]["name"] for d in _documents() if d.values[0]["kind"] == "FleetStream"}
    assert streams == {"FLEET_EVENTS", "FLEET_STATE", "FLEET_INSTALL", "FLEET_MDSMS", "FLEET_LEAN"}
    assert (Path(EXAMPLES[0]).parent / "siloleaf-ct-fac.yaml").exists()


def test_a_recursive_kubectl_apply_of_examples_reads_only_manifests() -> None:
    """`kubectl apply -R -f examples/` reads every .yaml, .yml and .json below it; the agent's Jinja
    templates (examples/agent/) are .yaml.j2, so it never sees them."""
    root = Path(__file__).resolve().parents[2] / "examples"
    read = [p for p in root.rglob("*") if p.suffix in (".yaml", ".yml", ".json")]
    assert read
    for path in read:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc is None or (doc.get("apiVersion") and doc.get("kind")), path
    assert list((root / "agent").rglob("*.yaml.j2"))
