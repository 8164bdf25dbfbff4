"""Status writing shared by the handlers: one owner per kind, conditions merged, no empty writes."""

from __future__ import annotations

from typing import Any

import kopf

from ..conditions import Cond, merge_conditions
from ..context import Context


def context(memo: kopf.Memo) -> Context:
    return memo["ctx"]


def write_status(patch: kopf.Patch, body: kopf.Body, fields: dict[str, Any], conds: list[Cond]) -> None:
    """Stage a status patch, only with what differs, so a steady state costs no API writes."""
    current = dict(body.get("status") or {})
    generation = body["metadata"].get("generation")
    desired = dict(fields)
    desired["observedGeneration"] = generation
    desired["conditions"] = merge_conditions(current.get("conditions"), conds, generation)
    for key, value in desired.items():
        if current.get(key) != value:
            patch.status[key] = value


def resource_kwargs(kind_plural: str) -> dict[str, Any]:
    return {"group": "fleet.lattice.dev", "version": "v1alpha1", "plural": kind_plural}
