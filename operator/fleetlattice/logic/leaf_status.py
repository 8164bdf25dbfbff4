"""SiloLeaf status from the hub's latest /leafz scrape and the agent's heartbeat (pure)."""

from __future__ import annotations

from typing import Any

from fleetlattice.api.messages import SiloState
from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.logic.conditions import Cond
from fleetlattice.logic.hub_status import ServerSnapshot
from fleetlattice.logic.times import now_iso, parse_time
from fleetlattice.render.names import SiloRef

HEARTBEAT_REFRESH_SECONDS = 30


def leaf_connection(snapshots: list[ServerSnapshot], silo: str) -> dict[str, Any] | None:
    """The silo's leaf as the hub's latest /leafz scrape lists it, with the server that holds it."""
    for snap in snapshots:
        for leaf in snap.leafz.get("leafs") or []:
            if leaf.get("name") == SiloRef(silo).leaf:
                return {**leaf, "hubServer": snap.pod}
    return None


def _heartbeat_fields(state: SiloState | None, previous: dict[str, Any]) -> dict[str, Any]:
    """The agent's last heartbeat, refreshed coarsely: writing every beat would cost one API write per
    silo every few seconds for a number nobody reads that precisely."""
    if state is None:
        return {}
    stored = parse_time(previous.get("lastHeartbeat"))
    fresh = stored is None or (state.ts - stored).total_seconds() >= HEARTBEAT_REFRESH_SECONDS
    ts = state.ts if fresh else stored
    return {"lastHeartbeat": ts.isoformat().replace("+00:00", "Z"), "installedVersion": state.version or ""}


def leaf_status(spec: SiloLeafSpec, previous: dict[str, Any], secret: str, snapshots: list[ServerSnapshot] | None,
                heartbeat: SiloState | None) -> tuple[dict[str, Any], list[Cond]]:
    """`snapshots` is None while the hub has not been scraped yet."""
    found = leaf_connection(snapshots or [], spec.silo)
    fields: dict[str, Any] = {"credentialsSecret": secret, "connected": found is not None,
                              **_heartbeat_fields(heartbeat, previous)}
    if found is None:
        fields.update(rtt="", hubServer="", connectedSince=None)
        waiting = "the hub has not been scraped yet" if snapshots is None else (
            "apply the bundle from `fleetlattice leaf export` in the silo's cluster"
            if spec.leaf.mode == "External" else "the leaf has not connected to the hub yet")
        return fields, [Cond.false("Connected", "LeafNotConnected", waiting),
                        Cond.false("Ready", "LeafNotConnected", waiting)]
    since = previous.get("connectedSince") if previous.get("connected") else None
    fields.update(rtt=found.get("rtt", ""), hubServer=found["hubServer"], connectedSince=since or now_iso())
    message = f"connected to {found['hubServer']} (rtt {found.get('rtt', '?')})"
    return fields, [Cond.true("Connected", "LeafConnected", message), Cond.true("Ready", "LeafConnected", message)]
