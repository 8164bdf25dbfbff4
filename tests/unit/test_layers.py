"""The layer seams of DESIGN.md, checked by walking every import of the package (ast, nothing imported):

- no import cycle anywhere in the package (module-level and deferred imports alike);
- api/ imports nothing of ours outside api/;
- render/ and logic/ import only api/, render/, logic/, and none of aiohttp, kubernetes, kopf, nats (pure;
  nats-py's JetStream config dataclasses excepted, see PURE_DATA_MODULES);
- apply/ never imports handlers/ or cli/; agent/ never imports apply/, handlers/ or cli/;
- nothing outside cli/ imports cli/;
- every third-party module the package imports belongs to a distribution pyproject.toml declares."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "operator"
PACKAGE = "fleetlattice"
LAYERS = ("api", "render", "logic", "clients", "apply", "handlers", "cli", "agent")
IO_LIBRARIES = ("aiohttp", "kubernetes", "kopf", "nats")
# nats-py's JetStream config dataclasses are plain data (no connection, no I/O): render/stream.py returns
# them so apply/ hands nats-py exactly what was rendered and diffed.
PURE_DATA_MODULES = ("nats.js.api",)


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module name (ours) or top-level name (third-party)
    line: int


def _module_name(path: Path, source: Path) -> str:
    parts = path.relative_to(source).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(source: Path = SOURCE) -> dict[str, Path]:
    return {_module_name(p, source): p for p in sorted((source / PACKAGE).rglob("*.py"))}


def _imports(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                # `from fleetlattice.x import y` names module x.y when y is a module, else x.
                candidate = f"{source}.{alias.name}"
                yield Import(module, candidate if candidate in known else source, node.lineno)


def _graph(source: Path = SOURCE) -> list[Import]:
    modules = _modules(source)
    return [imp for module, path in modules.items() for imp in _imports(module, path, set(modules))]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _ours(target: str) -> bool:
    return target == PACKAGE or target.startswith(PACKAGE + ".")


def _breaches(rule: str, imports: list[Import]) -> list[str]:
    return [f"{rule}: {i.importer} imports {i.target} (line {i.line})" for i in imports]


def test_every_module_lives_in_a_layer() -> None:
    loose = [m for m in _modules() if m != PACKAGE and _layer(m) is None]
    assert loose == [], f"modules outside the layer folders {LAYERS}: {loose}"


def test_no_import_cycle() -> None:
    edges: dict[str, set[str]] = {}
    modules = set(_modules())
    for imp in _graph():
        if imp.target in modules and imp.target != imp.importer:
            edges.setdefault(imp.importer, set()).add(imp.target)
    # A package's __init__ importing its own children is not a cycle of layers.
    for module in list(edges):
        edges[module] = {t for t in edges[module] if not t.startswith(module + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(modules):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


@pytest.mark.parametrize(
    ("layer", "allowed"),
    [
        ("api", {"api"}),
        ("render", {"api", "render", "logic"}),
        ("logic", {"api", "render", "logic"}),
        ("apply", {"api", "render", "logic", "clients", "apply"}),
        ("agent", {"api", "logic", "clients", "agent"}),
        ("clients", {"api", "render", "logic", "clients"}),
        ("handlers", {"api", "render", "logic", "clients", "apply", "handlers"}),
    ],
)
def test_layer_imports_only_downward(layer: str, allowed: set[str]) -> None:
    assert _upward(_graph(), layer, allowed) == []


def _upward(graph: list[Import], layer: str, allowed: set[str]) -> list[str]:
    bad = [i for i in graph if _layer(i.importer) == layer and _ours(i.target) and _layer(i.target) not in allowed]
    return _breaches(f"{layer}/ may import only {sorted(allowed)}", bad)


@pytest.mark.parametrize("layer", ["render", "logic", "api"])
def test_pure_layers_do_no_io(layer: str) -> None:
    bad = [i for i in _graph() if _layer(i.importer) == layer and i.target.split(".")[0] in IO_LIBRARIES
           and i.target not in PURE_DATA_MODULES]
    assert _breaches(f"{layer}/ is pure", bad) == []


def test_nothing_imports_the_cli() -> None:
    bad = [i for i in _graph() if _layer(i.target) == "cli" and _layer(i.importer) != "cli"]
    assert _breaches("nothing imports cli/", bad) == []


def _declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in project["dependencies"]}


def test_every_runtime_import_is_a_declared_dependency() -> None:
    declared = _declared_distributions()
    owners = importlib.metadata.packages_distributions()
    undeclared = []
    for imp in _graph():
        top = imp.target.split(".")[0]
        if _ours(imp.target) or top in sys.stdlib_module_names or top == "__future__":
            continue
        dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
        if not dists & declared:
            undeclared.append(f"{imp.importer} imports {top} (from {sorted(dists)}), not in [project].dependencies")
    assert undeclared == []


def test_the_walk_sees_a_breach(tmp_path: Path) -> None:
    """The checks above can fail: a pure module that imports the apply layer, relatively and inside a
    function, is reported by the same walk."""
    for rel, text in {
        "fleetlattice/__init__.py": "",
        "fleetlattice/apply/__init__.py": "",
        "fleetlattice/apply/hub.py": "",
        "fleetlattice/logic/__init__.py": "",
        "fleetlattice/logic/bad.py": "def f():\n    from ..apply import hub\n    return hub\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert _upward(_graph(tmp_path), "logic", {"api", "render", "logic"}) == [
        "logic/ may import only ['api', 'logic', 'render']: fleetlattice.logic.bad imports fleetlattice.apply.hub "
        "(line 2)"
    ]


def test_every_import_of_ours_names_a_module_that_exists() -> None:
    """Deferred imports (inside functions) fail only when they run: catch a stale path here instead."""
    modules = set(_modules())
    missing = [f"{i.importer} imports {i.target} (line {i.line})" for i in _graph()
               if _ours(i.target) and i.target not in modules]
    assert missing == []
