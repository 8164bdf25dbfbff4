"""Pure parts of the builtin plan: manifests rendered from a directory of templates, and what a
workload's status says about its rollout. No cluster access here."""

from __future__ import annotations

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


def render_manifests(directory: Path, silo: str, version: str, params: dict[str, str]) -> list[Manifest]:
    """Every object the templates define, labelled as the silo's and the agent's. Templates see `silo`,
    `version` and `params`; an undefined name is an error (StrictUndefined), not an empty string, so a
    missing param never becomes a half-named object. Use `params.get("ns", "default")` for optional ones."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined)
    manifests: list[Manifest] = []
    for path in template_files(directory):
        try:
            text = env.get_template(path.name).render(silo=silo, version=version, params=params)
            documents = list(yaml.safe_load_all(text))
        except (jinja2.TemplateError, yaml.YAMLError) as error:
            raise ManifestError(f"{path.name}: {error}") from error
        manifests.extend(_checked(path.name, doc, silo) for doc in documents if doc is not None)
    if not manifests:
        raise ManifestError(f"no manifests in {directory}")
    return manifests


def _checked(source: str, doc: Any, silo: str) -> Manifest:
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("apiVersion", "kind")):
        raise ManifestError(f"{source}: every document must be an object with apiVersion and kind")
    metadata = doc.setdefault("metadata", {})
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise ManifestError(f"{source}: {doc['kind']} has no metadata.name")
    metadata.setdefault("labels", {}).update({SILO_LABEL: silo, MANAGED_BY_LABEL: AGENT_NAME})
    return doc


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
