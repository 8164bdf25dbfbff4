"""The composition root: every long-lived object the handlers share, built once by `fleetlattice run`
and handed to kopf as its memo. Imports only downward (apply, clients, logic)."""

from __future__ import annotations

from dataclasses import dataclass

from fleetlattice.apply.hub import HubState
from fleetlattice.apply.install import InstallRequests
from fleetlattice.apply.install_store import InstallStore
from fleetlattice.apply.leaf import LeafState
from fleetlattice.clients.hub_connections import AddressMode, HubConnections
from fleetlattice.clients.kube import Kube
from fleetlattice.logic.heartbeats import SiloHeartbeats


@dataclass(frozen=True)
class Settings:
    hub_address: AddressMode = "auto"
    metrics_port: int = 9090
    # How long a FleetStream deletion waits for an unreachable hub before it lets go.
    delete_timeout_seconds: float = 120.0


@dataclass
class Runtime:
    settings: Settings
    kube: Kube
    connections: HubConnections
    hubs: HubState
    leaves: LeafState
    store: InstallStore
    installs: InstallRequests
    heartbeats: SiloHeartbeats

    @classmethod
    def build(cls, settings: Settings, kube: Kube | None = None) -> Runtime:
        kube = kube or Kube()
        connections = HubConnections(kube, settings.hub_address)
        heartbeats = SiloHeartbeats()
        hubs = HubState(kube)
        store = InstallStore(kube)
        return cls(settings=settings, kube=kube, connections=connections, hubs=hubs,
                   leaves=LeafState(kube, hubs, heartbeats), store=store,
                   installs=InstallRequests(kube, connections, store, heartbeats), heartbeats=heartbeats)
