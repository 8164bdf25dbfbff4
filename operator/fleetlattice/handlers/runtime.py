"""The composition root: every long-lived object the handlers share, built once by `fleetlattice run`
and handed to kopf as its memo. Imports only downward (apply, clients, logic)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import kopf

from fleetlattice.apply.credentials import CredentialSecrets
from fleetlattice.apply.hub import HubState
from fleetlattice.apply.install import InstallRequests
from fleetlattice.apply.install_store import InstallStore
from fleetlattice.apply.leaf import LeafState
from fleetlattice.apply.user import UserState
from fleetlattice.clients.hub_connections import AddressMode, HubConnections
from fleetlattice.clients.kube import Kube
from fleetlattice.logic.conditions import Notice
from fleetlattice.logic.heartbeats import SiloHeartbeats


def post_notice(obj: dict[str, Any], notice: Notice) -> None:
    """A Kubernetes Event through kopf's poster (batched, off the caller's path). Outside a running operator
    there is no poster, and an Event is never worth failing a status write for."""
    with contextlib.suppress(LookupError, RuntimeError):
        kopf.event(obj, type=notice.type, reason=notice.reason, message=notice.message)


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
    users: UserState
    store: InstallStore
    installs: InstallRequests
    heartbeats: SiloHeartbeats

    @classmethod
    def build(cls, settings: Settings, kube: Kube | None = None) -> Runtime:
        kube = kube or Kube()
        connections = HubConnections(kube, settings.hub_address)
        heartbeats = SiloHeartbeats()
        credentials = CredentialSecrets(kube)
        hubs = HubState(kube, credentials, connections)
        store = InstallStore(kube, notify=post_notice)
        return cls(settings=settings, kube=kube, connections=connections, hubs=hubs,
                   leaves=LeafState(kube, hubs, heartbeats, credentials),
                   users=UserState(kube, hubs, connections, credentials), store=store,
                   installs=InstallRequests(kube, connections, store, heartbeats), heartbeats=heartbeats)
