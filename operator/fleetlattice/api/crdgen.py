"""Pydantic models -> CustomResourceDefinitions: `crd` is pure; `write_crds` writes them into crds/."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from fleetlattice.api.kinds import CATEGORY, GROUP, KINDS, VERSION, Kind

# JSON-schema keywords Kubernetes' structural schemas do not accept or do not need.
_DROPPED_KEYS = ("title", "$defs")


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every $ref; the API server accepts no references."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **siblings}, defs)
    return {key: _resolve(value, defs) for key, value in node.items()}


def _structural(node: dict[str, Any], *, keep_defaults: bool) -> dict[str, Any]:
    """Rewrite pydantic's JSON schema into a Kubernetes structural schema."""
    node = {k: v for k, v in node.items() if k not in _DROPPED_KEYS}
    if "anyOf" in node:
        # Optional[X] is "X or null"; in Kubernetes an optional field is simply absent.
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"unions other than Optional are not structural: {branches}")
        node = {**branches[0], **node}
        if node.get("default", ...) is None:
            del node["default"]
    if not keep_defaults:
        node.pop("default", None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if node.get("additionalProperties") is True:
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "object" and "properties" in node:
        required = set(node.get("required", ()))
        props = {}
        for name, prop in node["properties"].items():
            prop = _structural(prop, keep_defaults=keep_defaults)
            if keep_defaults and name not in required and "default" not in prop:
                # An empty default lets the API server apply the nested defaults too; never for an object
                # with required fields (an optional one such as FleetUser's ingest), which {} would break.
                if prop.get("type") == "object" and "properties" in prop and not prop.get("required"):
                    prop["default"] = {}
                elif prop.get("type") == "array":
                    prop["default"] = []
            props[name] = prop
        node["properties"] = props
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _structural(node[key], keep_defaults=keep_defaults)
    return node


def openapi_schema(model: type[BaseModel], *, keep_defaults: bool = True) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve(schema, schema.get("$defs", {}))
    return _structural(resolved, keep_defaults=keep_defaults)


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = openapi_schema(kind.spec)
    status_schema = openapi_schema(kind.status, keep_defaults=False)
    spec_schema["description"] = kind.spec.__doc__ or ""
    status_schema["description"] = kind.status.__doc__ or ""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "fleet-lattice", "app.kubernetes.io/part-of": "fleet-lattice"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": [kind.short_name],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": c.name,
                            "type": c.type,
                            "jsonPath": c.json_path,
                            "description": c.description,
                            **({"priority": c.priority} if c.priority else {}),
                        }
                        for c in kind.columns
                    ]
                    + [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "API version of the object."},
                                "kind": {"type": "string", "description": "Kind of the object."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = directory / f"{kind.plural}.yaml"
        text = "# Generated by `fleetlattice crds` from the pydantic models. Do not edit.\n"
        text += yaml.safe_dump(crd(kind), sort_keys=False, width=120)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written
