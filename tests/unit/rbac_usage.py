"""What the operator asks of the Kubernetes API, derived from its code, as RBAC grants
(apiGroup, resource, verb, resourceName or None):

- every call of a clients/kube.Kube method in the operator's layers, the kind read from the call (a literal
  kind, a literal manifest, or for manifests built elsewhere the kinds their render functions produce), the
  verbs from kube.METHOD_VERBS;
- what kopf does for the handlers: list/watch/patch of each kind a handler is registered for, the status
  patch of the kinds whose handlers take kopf's `patch`, Events for kopf.event/info/warn;
- finalizers update of the kinds that own children (ownerReferences with blockOwnerDeletion);
- kopf's own requests, read from kopf's source (kopf/_core/reactor/observation.py, engines/peering.py,
  engines/posting.py): CRDs list/watch (its resource scanning), the peering objects in HA.

test_chart.py compares this with what the chart grants, in each direction."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

from fleetlattice.api.kinds import API_VERSION
from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.clients.kube import METHOD_VERBS, RESOURCES, Kube
from fleetlattice.handlers import common
from fleetlattice.render.hub_conf import render_hub_conf, restart_hash
from fleetlattice.render.hub_manifests import render_hub_manifests
from fleetlattice.render.leaf import render_leaf_manifests
from render_fixtures import HUB, hub_spec, hub_users, local_credential

Grant = tuple[str, str, str, str | None]

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "fleetlattice"
# The operator process. The agent runs in the silo with the silo's service account, the CLI with the user's.
OPERATOR_LAYERS = ("api", "apply", "clients", "handlers", "logic", "render")
GROUP = API_VERSION.rpartition("/")[0]


def rendered_hub_kinds() -> set[str]:
    """Every kind a hub renders, in its largest form (routes, TLS)."""
    spec = hub_spec(replicas=3, tls=True)
    return {m["kind"] for m in render_hub_manifests(HUB, spec, render_hub_conf(HUB, spec, hub_users()),
                                                   restart_hash(HUB, spec))}


def rendered_leaf_kinds() -> set[str]:
    """Every kind an in-cluster leaf renders (an External one renders nothing the operator applies)."""
    spec = SiloLeafSpec(silo="ct-fac", hub=HUB.name)
    return {m["kind"] for m in render_leaf_manifests(spec, HUB.namespace, "nats://hub:7422",
                                                     local_credential("ct-fac").public_key, hub_tls=True)}


# Calls whose object is built elsewhere: (file under the package, enclosing function) -> the kinds it may be.
BUILT_ELSEWHERE: dict[tuple[str, str], Callable[[], set[str]]] = {
    ("apply/hub.py", "apply"): rendered_hub_kinds,
    # Plus the copy of the silo's seed where the leaf runs in another namespace (render.leaf.leaf_seed_secret).
    ("apply/leaf.py", "apply"): lambda: rendered_leaf_kinds() | {"Secret"},
    # Whether a leaf's Deployment or Service name is free in the namespace it is placed in.
    ("apply/leaf.py", "_claim"): lambda: {"Deployment", "Service"},
    # What a SiloLeaf placed in another namespace, removed when it moves or goes.
    ("apply/leaf.py", "_delete_owned"): lambda: rendered_leaf_kinds() | {"Secret"},
    # logic.report_routing.by_hand_install: the record of a request published by hand.
    ("apply/install_consumer.py", "_record_by_hand"): lambda: {"SiloInstall"},
    # CredentialSecrets builds one Secret manifest for its create and its apply.
    ("apply/credentials.py", "ensure"): lambda: {"Secret"},
    # The install status store holds SiloInstalls only.
    ("apply/install_store.py", "update"): lambda: {"SiloInstall"},
}
# Modules that give children an owner (owner_reference, ownership, or a credential Secret through
# CredentialSecrets.ensure), and the kind of the owner there.
OWNERS = {"apply/hub.py": "FleetHub", "apply/leaf.py": "SiloLeaf", "apply/user.py": "FleetUser"}
# The helpers themselves: they own nothing, their callers do.
OWNER_HELPERS = {"logic/conditions.py", "apply/credentials.py"}


def _gives_an_owner(node: ast.Call) -> bool:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return name in ("owner_reference", "ownership") or (
        name == "ensure" and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute)
        and func.value.attr == "credentials")


KOPF_WATCHED_VERBS = ("list", "watch", "patch")  # patch: its annotations and finalizers
KOPF_EVENT_CALLS = {"event", "info", "warn", "exception"}


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for layer in OPERATOR_LAYERS:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """(name of the innermost enclosing def, node) for every node."""
    def walk(node: ast.AST, owner: str) -> Iterator[tuple[str, ast.AST]]:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else owner
            yield name, child
            yield from walk(child, name)
    yield from walk(tree, "<module>")


def _is_kube(node: ast.expr) -> bool:
    """`kube`, `self.kube`, `rt.kube`, `self.store.kube`: the operator's Kube object."""
    return (isinstance(node, ast.Name) and node.id == "kube") or (isinstance(node, ast.Attribute)
                                                                  and node.attr == "kube")


def _literal_kind(arg: ast.expr) -> str | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.Dict):
        for key, value in zip(arg.keys, arg.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "kind" and isinstance(value, ast.Constant):
                return str(value.value)
    return None


def _grants(kind: str, verbs: frozenset[str], sub: str | None = None) -> set[Grant]:
    resource = RESOURCES[kind]
    plural = f"{resource.plural}/{sub}" if sub else resource.plural
    return {(resource.api_version.rpartition("/")[0], plural, verb, None) for verb in verbs}


class Unresolved(AssertionError):
    """A Kube call whose kind the derivation cannot tell: make it literal or list it in BUILT_ELSEWHERE."""


def kube_calls() -> list[tuple[str, str, str, set[str]]]:
    """(file, function, Kube method, kinds) for every call of a Kube method in the operator's layers."""
    calls = []
    for path, tree in _sources():
        if path == "clients/kube.py":
            continue
        for function, node in _functions(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in METHOD_VERBS and _is_kube(node.func.value)):
                continue
            kind = _literal_kind(node.args[0]) if node.args else None
            if kind is not None:
                kinds = {kind}
            elif (path, function) in BUILT_ELSEWHERE:
                kinds = BUILT_ELSEWHERE[(path, function)]()
            else:
                raise Unresolved(f"{path}:{node.lineno} ({function}): kube.{node.func.attr} of an unknown kind")
            calls.append((path, function, node.func.attr, kinds))
    return calls


def _decorator_resource(decorator: ast.expr) -> str | None:
    """`@kopf.on.create(HUBS)`, `@kopf.timer(LEAVES, ...)` -> the resource it registers for."""
    if not (isinstance(decorator, ast.Call) and decorator.args and isinstance(decorator.args[0], ast.Name)):
        return None
    root = decorator.func
    while isinstance(root, ast.Attribute):
        root = root.value
    return getattr(common, decorator.args[0].id) if isinstance(root, ast.Name) and root.id == "kopf" else None


def handler_grants() -> set[Grant]:
    """What kopf does for the registered handlers."""
    found: set[Grant] = set()
    for path, tree in _sources():
        for _function, node in _functions(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in \
                    KOPF_EVENT_CALLS and isinstance(node.func.value, ast.Name) and node.func.value.id == "kopf":
                found.add(("", "events", "create", None))
            if not (path.startswith("handlers/") and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)):
                continue
            writes_status = any(a.arg == "patch" for a in node.args.args + node.args.kwonlyargs)
            for decorator in node.decorator_list:
                resource = _decorator_resource(decorator)
                if resource is None:
                    continue
                plural, _, group = resource.partition(".")
                found |= {(group, plural, verb, None) for verb in KOPF_WATCHED_VERBS}
                if writes_status:
                    found.add((group, f"{plural}/status", "patch", None))
    return found


def owner_grants() -> set[Grant]:
    setters = {path for path, tree in _sources() for _f, node in _functions(tree)
               if isinstance(node, ast.Call) and _gives_an_owner(node)} - OWNER_HELPERS
    assert setters == set(OWNERS), f"modules setting ownerReferences changed: {sorted(setters)}; update OWNERS"
    return set().union(*(_grants(kind, frozenset({"update"}), "finalizers") for kind in OWNERS.values()))


def namespaced_grants() -> set[Grant]:
    """Everything the operator does inside the namespaces it serves."""
    methods = {name for name, _ in inspect.getmembers(Kube, inspect.iscoroutinefunction) if not name.startswith("_")}
    assert methods == set(METHOD_VERBS), "a Kube method without its verbs in kube.METHOD_VERBS"
    found = handler_grants() | owner_grants()
    for _path, _function, method, kinds in kube_calls():
        sub, verbs = METHOD_VERBS[method]
        for kind in kinds:
            found |= _grants(kind, verbs, sub)
    return found


# kopf's resource scanning (observation.resource_observer) lists and watches CRDs in every mode; it reads
# namespaces only when not cluster-wide, and falls back to the exact names given when forbidden.
CLUSTER_GRANTS: set[Grant] = {("apiextensions.k8s.io", "customresourcedefinitions", verb, None)
                              for verb in ("list", "watch")}


def peering_grants(plural: str, name: str) -> set[Grant]:
    """kopf peering (engines/peering.py): watches every peering object, keeps its own alive by merge patch."""
    return {("kopf.dev", plural, "list", None), ("kopf.dev", plural, "watch", None),
            ("kopf.dev", plural, "patch", name)}


def granted(rules: list[dict]) -> set[Grant]:
    return {(group, resource, verb, name)
            for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"] for name in rule.get("resourceNames") or [None]}


def mismatch(grants: set[Grant], used: set[Grant]) -> list[str]:
    """What differs, readably: empty when the grants are exactly what is used."""
    def show(items: set[Grant]) -> str:
        return ", ".join(f"{g or 'core'}/{r} {v}" + (f" [{n}]" if n else "") for g, r, v, n in sorted(
            items, key=lambda i: (i[0], i[1], i[2], i[3] or "")))
    problems = []
    if grants - used:
        problems.append(f"granted, never used: {show(grants - used)}")
    if used - grants:
        problems.append(f"used, not granted: {show(used - grants)}")
    return problems
