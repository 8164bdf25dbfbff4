"""Which silos a hub's config admits (pure): from the SiloLeaves and credential Secrets the caller already holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.render.hub_conf import SiloUser
from fleetlattice.render.names import HubRef, SiloRef


def silo_users(hub: HubRef, leaves: Iterable[Mapping[str, Any]], key_of: Callable[[str], str | None],
               spec_of: Callable[[Mapping[str, Any]], SiloLeafSpec | None]) -> tuple[SiloUser, ...]:
    """One user per live SiloLeaf of `hub` whose credential exists. `leaves`: the namespace's SiloLeaves; `key_of`:
    the public key in a credentials Secret of the hub's namespace, by name (None when there is none); `spec_of`: a
    leaf's parsed spec, None when invalid. The oldest SiloLeaf of a silo in the namespace owns it, whichever hub it
    names, so a duplicate cannot take over another's identity."""
    live = [leaf for leaf in leaves if leaf["metadata"]["namespace"] == hub.namespace
            and not leaf["metadata"].get("deletionTimestamp")]
    live.sort(key=lambda leaf: (leaf["metadata"].get("creationTimestamp") or "", leaf["metadata"]["name"]))
    users: dict[str, SiloUser] = {}
    claimed: set[str] = set()
    for leaf in live:
        spec = spec_of(leaf)
        if spec is None or spec.silo in claimed:
            continue
        claimed.add(spec.silo)
        if spec.hub != hub.name:
            continue
        key = key_of(SiloRef(spec.silo).credentials_secret)
        if key:
            users[spec.silo] = SiloUser(spec.silo, key, spec.permissions)
    return tuple(users[s] for s in sorted(users))
