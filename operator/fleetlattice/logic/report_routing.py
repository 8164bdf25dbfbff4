"""Which SiloInstall an agent report belongs to (pure). The subject names the silo; a requestId
names the install (its uid prefix) and must belong to that same silo, so one silo can never
complete another silo's install even with a valid requestId."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetlattice.api.bus import (
    BUS_ORIGIN,
    BUS_ORIGIN_LABEL,
    BUS_REQUEST_ANNOTATION,
    BUS_REQUEST_PREFIX,
    UID_LENGTH,
    bus_install_name,
    parse_report_subject,
)
from fleetlattice.api.kinds import API_VERSION
from fleetlattice.api.messages import MAX_MESSAGE_BYTES, AcceptedRequest
from fleetlattice.api.siloinstall import SiloInstallSpec
from fleetlattice.render.names import SILO_LABEL


@dataclass(frozen=True)
class InstallKey:
    namespace: str
    name: str


@dataclass(frozen=True)
class IndexedInstall:
    """What the router needs of a SiloInstall, kept in a kopf index."""

    key: InstallKey
    silo: str
    phase: str
    requested_at: str


@dataclass(frozen=True)
class Route:
    kind: str
    payload: Any = None
    install: InstallKey | None = None
    outcome: str = ""  # set when the report cannot be applied: ignored-invalid | unknown-request | adopt
    detail: str = ""
    silo: str = ""  # the subject's, once it parsed


def route(
    subject: str,
    data: bytes,
    namespace: str,
    by_uid: Mapping[str, Iterable[IndexedInstall]],
    by_silo: Mapping[tuple[str, str], Iterable[IndexedInstall]],
    by_request: Mapping[str, Iterable[IndexedInstall]],
) -> Route:
    parsed = parse_report_subject(subject)
    if parsed is None:
        return Route("unknown", outcome="ignored-invalid", detail=f"unexpected subject {subject}")
    silo, kind = parsed
    if len(data) > MAX_MESSAGE_BYTES:
        return Route(kind, outcome="ignored-invalid", detail=f"{len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Route(kind, outcome="ignored-invalid", detail=f"not JSON: {exc}")
    if not isinstance(payload, dict):
        return Route(kind, outcome="ignored-invalid", detail="not a JSON object")
    rid = payload.get("requestId")
    if rid is not None:
        if not isinstance(rid, str):
            return Route(kind, outcome="ignored-invalid", detail="requestId is not a string")
        by_hand = rid.startswith(BUS_REQUEST_PREFIX)
        candidates = by_request.get(rid, ()) if by_hand else by_uid.get(rid[:UID_LENGTH], ())
        owners = [i for i in candidates if i.key.namespace == namespace and i.silo == silo]
        if owners:
            return Route(kind, payload, owners[0].key, silo=silo)
        if by_hand and kind == "progress" and isinstance(payload.get("request"), dict):
            return Route(kind, payload, outcome="adopt", detail=f"request {rid} published by hand on silo {silo}",
                         silo=silo)
        return Route(kind, outcome="unknown-request", detail=f"no install of silo {silo} has requestId {rid}")
    wanted = {"Scrubbing"} if kind == "scrubbed" else {"Pending", "Requested", "InProgress"}
    active = [i for i in by_silo.get((namespace, silo), ()) if i.phase in wanted]
    if not active:
        return Route(kind, outcome="unknown-request", detail=f"silo {silo} has no active install")
    # Seed-style reports carry no requestId: the most recently requested install is the active one.
    return Route(kind, payload, max(active, key=lambda i: i.requested_at).key, silo=silo)


def index_entry(namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> IndexedInstall:
    """What a kopf index keeps of one SiloInstall for routing."""
    return IndexedInstall(InstallKey(namespace, name), str(spec.get("silo", "")), str(status.get("phase", "Pending")),
                          str(status.get("requestedAt", "")))


def by_hand_install(namespace: str, silo: str, rid: str, accepted: AcceptedRequest) -> dict[str, Any]:
    """The SiloInstall that records a request published by hand (from the agent's `accepted` report), so
    `kubectl get siloinstalls` and `describe` show it like any other. Marked as from the bus, so GitOps
    tooling can tell it is nobody's manifest. Raises ValueError when it breaks a SiloInstall's limits."""
    spec = SiloInstallSpec.model_validate({"silo": silo, "version": accepted.version, "params": accepted.params})
    return {
        "apiVersion": API_VERSION,
        "kind": "SiloInstall",
        "metadata": {"name": bus_install_name(silo, rid), "namespace": namespace,
                     "labels": {BUS_ORIGIN_LABEL: BUS_ORIGIN, SILO_LABEL: silo},
                     "annotations": {BUS_REQUEST_ANNOTATION: rid}},
        "spec": spec.model_dump(by_alias=True, exclude_defaults=True) | {"silo": silo, "version": spec.version},
    }
