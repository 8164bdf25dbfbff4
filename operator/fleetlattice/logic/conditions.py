"""Kubernetes condition bookkeeping (pure): lastTransitionTime moves only when status changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from fleetlattice.logic.times import now_iso


@dataclass(frozen=True)
class Cond:
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""

    @classmethod
    def true(cls, type_: str, reason: str, message: str = "") -> Cond:
        return cls(type_, "True", reason, message)

    @classmethod
    def false(cls, type_: str, reason: str, message: str = "") -> Cond:
        return cls(type_, "False", reason, message)


class NotReady(Exception):
    """The object cannot be reconciled yet, for a reason its Ready condition names (HubNotFound,
    HubUnavailable, DuplicateSilo, ...): worth retrying soon."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def condition(self) -> Cond:
        return Cond.false("Ready", self.reason, str(self))


def merge_conditions(
    current: list[dict[str, Any]] | None, updates: list[Cond], generation: int | None, now: str | None = None
) -> list[dict[str, Any]]:
    """Apply `updates` over `current`, keeping conditions not mentioned, ordered by type."""
    stamp = now or now_iso()
    by_type = {c["type"]: dict(c) for c in current or []}
    for cond in updates:
        previous = by_type.get(cond.type)
        changed = previous is None or previous.get("status") != cond.status
        by_type[cond.type] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": stamp if changed else previous.get("lastTransitionTime", stamp),
            **({"observedGeneration": generation} if generation is not None else {}),
        }
    return sorted(by_type.values(), key=lambda c: (c["type"] != "Ready", c["type"]))


class Notice(NamedTuple):
    """A Kubernetes Event for `kubectl describe` and `kubectl get events`."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


# Reasons that only say an object has not come up yet: as a condition's first state they are where every new
# object starts, not news (a Warning on each new SiloLeaf was 1,000 Events at a cold start of 1,000 silos). Any
# later change to one of them, a leaf that drops, is an Event as before.
STARTING_REASONS = frozenset({"LeafNotConnected", "ServersStarting"})


def condition_notices(current: list[dict[str, Any]] | None, desired: list[dict[str, Any]]) -> list[Notice]:
    """One Event per condition whose status or reason changes; a new message alone (an RTT, a count) is
    not news, nor is a second condition changing for the same reason (Ready follows Connected), nor a new
    condition that says the object is starting. A Ready that turns False is a Warning."""
    before = {c["type"]: (c.get("status"), c.get("reason")) for c in current or []}
    notices: dict[str, Notice] = {}
    for c in desired:
        if c["type"] not in before and c["reason"] in STARTING_REASONS:
            continue
        if before.get(c["type"]) != (c["status"], c["reason"]):
            kind = "Warning" if c["type"] == "Ready" and c["status"] == "False" else "Normal"
            notices.setdefault(c["reason"] or c["type"],
                               Notice(kind, c["reason"] or c["type"], f"{c['type']}={c['status']}: {c['message']}"))
    return list(notices.values())


def owner_reference(body: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """Owner reference to a custom resource, so Kubernetes garbage-collects its children."""
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


# Marks what an object owns in another namespace, where an owner reference cannot point (Kubernetes garbage
# collection would delete the child at once): `<namespace>/<name>` of the owner.
FOREIGN_OWNER_ANNOTATION = "fleet.lattice.dev/owner"


def foreign_owner(body: dict[str, Any]) -> str:
    return f"{body['metadata']['namespace']}/{body['metadata']['name']}"


def ownership(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The metadata that makes a child in `namespace` belong to `body`: an owner reference in its own namespace,
    else the owner annotation (its deletion handler removes such children)."""
    if namespace == body["metadata"]["namespace"]:
        return {"ownerReferences": [owner_reference(body)]}
    return {"annotations": {FOREIGN_OWNER_ANNOTATION: foreign_owner(body)}}


def owned_by(obj: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether `obj` is one of `body`'s children (by either mark)."""
    meta = obj.get("metadata", {})
    uid = body["metadata"].get("uid")
    return any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or []) or (
        (meta.get("annotations") or {}).get(FOREIGN_OWNER_ANNOTATION) == foreign_owner(body))
