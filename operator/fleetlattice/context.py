"""What the handlers share: one Kubernetes facade, one NATS connection per hub, the latest
hub scrape (so SiloLeaf status reads it instead of scraping again), and per-hub locks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .api.messages import SiloState
from .coalesce import Coalescer
from .install_bus import InstallStore
from .kube import Kube
from .monitoring import ServerSnapshot
from .natsconn import HubConnections
from .render.names import HubRef


@dataclass(frozen=True)
class Settings:
    delete_timeout_seconds: float = 120.0


@dataclass
class Context:
    kube: Kube
    hubs: HubConnections
    installs: InstallStore
    settings: Settings = field(default_factory=Settings)
    snapshots: dict[HubRef, list[ServerSnapshot]] = field(default_factory=dict)
    # (namespace, silo) -> the silo agent's latest state, pushed by a FLEET_STATE watch per hub.
    config_written_at: dict[HubRef, datetime] = field(default_factory=dict)
    # The silo users' bcrypt hashes in the config this process last wrote for each hub.
    rendered_silo_hashes: dict[HubRef, frozenset[str]] = field(default_factory=dict)
    hub_syncs: Coalescer[HubRef, bool] = field(init=False)
    heartbeats: dict[tuple[str, str], SiloState] = field(default_factory=dict)
    _config_locks: dict[HubRef, asyncio.Lock] = field(default_factory=dict)
    _credential_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .hub_reconcile import render_hub_now  # the hub layer needs this context type

        self.hub_syncs = Coalescer(lambda hub: render_hub_now(self, hub))

    def config_lock(self, hub: HubRef) -> asyncio.Lock:
        """Serialises writes of one hub's config: the hub and its SiloLeaves all render it."""
        return self._config_locks.setdefault(hub, asyncio.Lock())

    def credential_lock(self, namespace: str, silo: str) -> asyncio.Lock:
        """Serialises read-or-generate of one silo's credential: its create handler and its resync timer
        can run at once, and two generated credentials would rotate it (leaf roll, hub reload)."""
        return self._credential_locks.setdefault((namespace, silo), asyncio.Lock())

    def heartbeat_age(self, namespace: str, silo: str) -> float | None:
        """Seconds since the silo's agent last reported its state; None if it never did."""
        state = self.heartbeats.get((namespace, silo))
        return None if state is None else (datetime.now(UTC) - state.ts).total_seconds()
