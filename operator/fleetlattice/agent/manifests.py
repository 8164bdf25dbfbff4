"""Pure parts of the builtin plan: manifests rendered from a directory of templates, and what a
workload's status says about its rollout. No cluster access here."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import jinja2
import yaml

SILO_LABEL = "fleet.lattice.dev/silo"
MANAGED_BY_LABEL = "fleet.lattice.dev/managed-by"
AGENT_NAME = "fleetlattice-agent"
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet"})
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".yaml.j2", ".yml.j2")

Manifest = dict[str, Any]


class ManifestError(ValueError):
    """The templates do not render to Kubernetes objects; another attempt would fail the same way."""


def template_files(directory: Path) -> list[Path]:
    """The templates, by file name: name them 00-namespace.yaml, 10-app.yaml, ... to order the apply."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(TEMPLATE_SUFFIXES))


class _Value(str):
    """What a template sees for each request value: its text is a placeholder token, so the YAML is parsed
    with the template's structure only, and the real value goes into the parsed strings afterwards. A value
    can then never add a line, a key or a document (a newline in a param once added a ClusterRoleBinding).
    `| int` and `| float` still see the value itself; a filter that rewrites the token is refused."""

    value: str

    def __new__(cls, token: str, value: str) -> _Value:
        made = super().__new__(cls, token)
        made.value = value
        return made

    def __int__(self) -> int:
        return int(self.value)

    def __float__(self) -> float:
        return float(self.value)


class _Values:
    """The request's values behind tokens that cannot occur in a template by chance."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(8)
        self.by_token: dict[str, str] = {}

    def wrap(self, value: str) -> _Value:
        token = f"fl{self.nonce}v{len(self.by_token)}x"
        self.by_token[token] = value
        return _Value(token, value)

    def fill(self, node: Any) -> tuple[Any, bool]:
        """`node` with every token replaced by its value, and whether any was. A string that is exactly one
        token takes the value's YAML scalar type (`replicas: {{ params.replicas }}` stays a number), as the
        text paste did; a mapping or list from a value is impossible by construction."""
        if isinstance(node, dict):
            filled = [(self.fill(k), self.fill(v)) for k, v in node.items()]
            return {k: v for (k, _), (v, _) in filled}, any(a or b for (_, a), (_, b) in filled)
        if isinstance(node, list):
            items = [self.fill(item) for item in node]
            return [v for v, _ in items], any(used for _, used in items)
        if not isinstance(node, str) or self.nonce not in node.lower():
            return node, False
        if node in self.by_token:
            return _scalar(self.by_token[node]), True
        text = node
        for token, value in self.by_token.items():
            text = text.replace(token, value)
        if self.nonce in text.lower():
            raise ManifestError("a template filter rewrote a request value (only `int` and `float` may be used)")
        return text, True


def _scalar(value: str) -> Any:
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (bool, int, float)) else value


def render_manifests(directory: Path, silo: str, version: str, params: dict[str, str],
                     namespaces: frozenset[str] = frozenset()) -> list[Manifest]:
    """Every object the templates define, labelled as the silo's and the agent's. Templates see `silo`,
    `version` and `params`; an undefined name is an error (StrictUndefined), not an empty string, so a
    missing param never becomes a half-named object. Use `params.get("ns", "default")` for optional ones.

    `version` and `params` come from the bus, so they only ever fill in parsed strings (see `_Value`), never
    choose an object's `apiVersion` or `kind`, and choose its namespace only among `namespaces` (the ones the
    silo declared; a namespace written in the template itself is declared by being there)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined)
    manifests: list[Manifest] = []
    for path in template_files(directory):
        values = _Values()
        context = {"silo": silo, "version": values.wrap(version),
                   "params": {k: values.wrap(v) for k, v in params.items()}}
        try:
            documents = list(yaml.safe_load_all(env.get_template(path.name).render(**context)))
        except (jinja2.TemplateError, yaml.YAMLError, ValueError) as error:
            raise ManifestError(f"{path.name}: {error}") from error
        for doc in documents:
            if doc is not None:
                manifests.append(_checked(path.name, _filled(path.name, doc, values, namespaces), silo))
    if not manifests:
        raise ManifestError(f"no manifests in {directory}")
    return manifests


def _filled(source: str, doc: Any, values: _Values, namespaces: frozenset[str]) -> Any:
    if not isinstance(doc, dict):
        return doc
    for key in ("apiVersion", "kind"):
        if values.fill(doc.get(key))[1]:
            raise ManifestError(f"{source}: {key} may not come from the request")
    metadata = doc.get("metadata")
    if isinstance(metadata, dict):
        field = "name" if doc.get("kind") == "Namespace" else "namespace"
        namespace, from_request = values.fill(metadata.get(field))
        if from_request and namespace not in namespaces:
            allowed = ", ".join(sorted(namespaces)) or "none"
            raise ManifestError(f"{source}: {doc.get('kind')} namespace {namespace!r} comes from the request and is "
                                f"not one this silo's agent may touch ({allowed}; agent --namespace)")
    return values.fill(doc)[0]


def _checked(source: str, doc: Any, silo: str) -> Manifest:
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("apiVersion", "kind")):
        raise ManifestError(f"{source}: every document must be an object with apiVersion and kind")
    metadata = doc.setdefault("metadata", {})
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise ManifestError(f"{source}: {doc['kind']} has no metadata.name")
    metadata.setdefault("labels", {}).update({SILO_LABEL: silo, MANAGED_BY_LABEL: AGENT_NAME})
    return doc


def owned_by_agent(live: Manifest, silo: str) -> bool:
    """Whether the agent of `silo` created this live object (its labels say so): the only objects it may
    change or delete. Anything else with the same name is someone else's and is left alone."""
    labels = (live.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == AGENT_NAME and labels.get(SILO_LABEL) == silo


def describe(manifest: Manifest) -> str:
    meta = manifest["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{manifest['kind']} {where}{meta['name']}"


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in WORKLOAD_KINDS]


def rolled_out(live: Manifest) -> bool:
    """As `kubectl rollout status`: the controller saw the latest spec, and every desired replica is
    updated and ready (available, for a Deployment)."""
    meta, spec, status = live.get("metadata", {}), live.get("spec", {}), live.get("status") or {}
    desired = spec.get("replicas", 1)
    ready_field = "availableReplicas" if live.get("kind") == "Deployment" else "readyReplicas"
    return (
        status.get("observedGeneration", 0) >= meta.get("generation", 1)
        and status.get("updatedReplicas", 0) >= desired
        and status.get(ready_field, 0) >= desired
        and status.get("replicas", 0) == desired  # no old pods left over
    )


def ready_pods(live_workloads: list[Manifest]) -> int:
    """Ready pods of the applied workloads, from their status objects."""
    return sum((w.get("status") or {}).get("readyReplicas", 0) for w in live_workloads)
