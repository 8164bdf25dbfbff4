"""FleetHub status from what its servers report (pure)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fleetlattice.logic.conditions import Cond
from fleetlattice.logic.times import parse_time
from fleetlattice.render.hub_conf import CONFIG_DIGEST_KEY


@dataclass
class ServerSnapshot:
    """What one server reports on its monitoring port; `error` is set when it could not be read."""

    pod: str
    healthy: bool = False
    varz: dict[str, Any] = field(default_factory=dict)
    leafz: dict[str, Any] = field(default_factory=dict)
    jsz: dict[str, Any] = field(default_factory=dict)
    error: str = ""


# The servers' clocks and the operator's may differ a little; a reload cannot come sooner than the
# kubelet's ConfigMap sync after the write anyway, so this tolerance does not blur two reloads.
CLOCK_SKEW = timedelta(seconds=1)


# How long after a config write a server may still run an older one before it is asked to reload: the nudged
# kubelet sync and the reloader's signal take about a second, a kubelet sync without the nudge a minute or so.
RELOAD_GRACE = timedelta(seconds=15)


def loaded_digest(snap: ServerSnapshot) -> str:
    """The digest of the config the server has loaded (render.hub_conf.CONFIG_DIGEST_KEY), "" if it has none."""
    return str((snap.varz.get("metadata") or {}).get(CONFIG_DIGEST_KEY, ""))


def reload_pending(snapshots: list[ServerSnapshot], changed_at: datetime | None,
                   digest: str | None = None) -> list[str]:
    """Servers that have not loaded the configuration last written: by its digest when this process wrote or
    rendered it, else by its write time `changed_at` (a load after the write may still have read older files)."""
    if digest:
        return [snap.pod for snap in snapshots if loaded_digest(snap) != digest]
    if changed_at is None:
        return []
    pending = []
    for snap in snapshots:
        loaded = parse_time(snap.varz.get("config_load_time"))
        if loaded is None or loaded < changed_at - CLOCK_SKEW:
            pending.append(snap.pod)
    return pending


def missed_reload(snapshots: list[ServerSnapshot], digest: str | None, changed_at: datetime | None,
                  now: datetime, restart_rolling: bool = False) -> list[ServerSnapshot]:
    """Healthy servers still on another config RELOAD_GRACE after the write. The reloader sidecar signals only
    for changes it sees after its own start, which waits for the server's pid file (it looks every 4 s) and then
    takes the files as they are: a write that lands in between is never loaded, and the server would keep the
    older config (and the hub a silo's leaf cannot sign in to) until the next change. None while the servers roll
    for a setting that needs a restart: they get the new config by restarting, and a reload would refuse it."""
    if not digest or changed_at is None or now - changed_at < RELOAD_GRACE or restart_rolling:
        return []
    return [snap for snap in snapshots if snap.healthy and snap.varz.get("server_id") and loaded_digest(snap) != digest]


def hub_status(
    desired: int,
    snapshots: list[ServerSnapshot],
    changed_at: datetime | None,
    restart_rolling: bool,
    digest: str | None = None,
) -> tuple[dict[str, Any], list[Cond]]:
    healthy = [s for s in snapshots if s.healthy]
    unhealthy = [s for s in snapshots if not s.healthy]
    versions = Counter(s.varz.get("version", "") for s in healthy if s.varz.get("version"))
    js = [s.jsz for s in healthy if s.jsz]
    fields: dict[str, Any] = {
        "replicas": desired,
        "readyReplicas": len(healthy),
        "ready": f"{len(healthy)}/{desired}",
        "version": versions.most_common(1)[0][0] if versions else "",
        "leafConnections": sum(len(s.leafz.get("leafs") or []) for s in healthy),
        "streams": max((j.get("streams", 0) for j in js), default=0),
        "jetstream": {
            "streams": max((j.get("streams", 0) for j in js), default=0),
            "consumers": max((j.get("consumers", 0) for j in js), default=0),
            "messages": max((j.get("messages", 0) for j in js), default=0),
            "bytes": max((j.get("bytes", 0) for j in js), default=0),
            "memory": sum(j.get("memory", 0) for j in js),
            "storage": sum(j.get("storage", 0) for j in js),
        },
        "servers": [
            {
                "name": s.pod,
                "version": s.varz.get("version", ""),
                "connections": s.varz.get("connections", 0),
                "leafnodes": s.varz.get("leafnodes", 0),
                "configDigest": s.varz.get("config_digest", ""),
                "configLoadTime": s.varz.get("config_load_time", ""),
            }
            for s in snapshots
        ],
    }
    pending = reload_pending(healthy, changed_at, digest)
    conds: list[Cond] = []
    if unhealthy:
        detail = "; ".join(f"{s.pod}: {s.error or 'healthz failing'}" for s in unhealthy)
        conds.append(Cond.true("Degraded", "ServerUnhealthy", detail))
    else:
        conds.append(Cond.false("Degraded", "AllServersHealthy"))
    if restart_rolling:
        conds.append(Cond.true("Progressing", "RestartRequired",
                               "settings that nats-server cannot reload changed; rolling the StatefulSet"))
    elif len(healthy) < desired:
        conds.append(Cond.true("Progressing", "ServersStarting", f"{len(healthy)} of {desired} servers ready"))
    elif pending:
        conds.append(Cond.true("Progressing", "ReloadPending",
                               f"waiting for {', '.join(pending)} to reload the new configuration"))
    else:
        conds.append(Cond.false("Progressing", "Reconciled", "configuration loaded by every server"))
    progressing = next((c for c in conds if c.type == "Progressing" and c.status == "True"), None)
    if progressing is None:
        digests = sorted({s.varz.get("config_digest", "") for s in healthy} - {""})
        conds.append(Cond.true("Ready", "ServersReady", f"{desired} server(s) ready, config {', '.join(digests)}"))
    else:
        conds.append(Cond.false("Ready", progressing.reason, progressing.message))
    return fields, conds
