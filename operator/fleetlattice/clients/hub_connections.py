"""One shared NATS connection per hub, as the operator's FLEET-account user, reconnecting forever.

Out of cluster (e2e, a laptop) the Service DNS names do not resolve, so the hub is reached by its
client Service's ClusterIP; in cluster by DNS. Nothing is written to /etc/hosts or the config."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Literal

import nats
import nats.errors
from nats.aio.client import Client as NATS

from fleetlattice.clients import nats_connection
from fleetlattice.clients.kube import Kube
from fleetlattice.clients.metrics import HUB_CONNECTED
from fleetlattice.logic.credentials import Credential
from fleetlattice.render.names import HubRef

log = logging.getLogger(__name__)

AddressMode = Literal["auto", "dns", "clusterip"]
OPERATOR_USER = "fleet-operator"
SYSTEM_USER = "sys"
# A connection that has been reconnecting this long is replaced: the Service may have moved.
STALE_AFTER_SECONDS = 30.0
INITIAL_CONNECT_SECONDS = 8.0
RELOAD_REQUEST_SECONDS = 5.0


class HubNotReachable(Exception):
    """The hub has no address or credentials yet, or refused the connection."""


class ReloadRefused(Exception):
    """A server answered a reload request with an error (its config files do not load, say)."""


def resolve_mode(mode: AddressMode) -> Literal["dns", "clusterip"]:
    if mode != "auto":
        return mode
    return "dns" if os.environ.get("KUBERNETES_SERVICE_HOST") else "clusterip"


@dataclass
class _Entry:
    nc: NATS
    disconnected_since: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class HubConnections:
    def __init__(self, kube: Kube, mode: AddressMode = "auto") -> None:
        self.kube = kube
        self.mode = resolve_mode(mode)
        self._entries: dict[HubRef, _Entry] = {}
        self._locks: dict[HubRef, asyncio.Lock] = {}

    async def client_url(self, hub: HubRef) -> str:
        if self.mode == "dns":
            return hub.client_url()
        service = await self.kube.get("Service", hub.namespace, hub.client_service)
        ip = (service or {}).get("spec", {}).get("clusterIP")
        if not ip or ip == "None":
            raise HubNotReachable(f"Service {hub.namespace}/{hub.client_service} has no ClusterIP yet")
        port = service["spec"]["ports"][0]["port"]
        return f"nats://{ip}:{port}"

    async def operator_credential(self, hub: HubRef) -> Credential:
        secret = await self.kube.get("Secret", hub.namespace, hub.auth_secret)
        cred = Credential.from_secret((secret or {}).get("data", {}), prefix="operator-")
        if cred is None:
            raise HubNotReachable(f"Secret {hub.namespace}/{hub.auth_secret} has no operator credential yet")
        return cred

    async def get(self, hub: HubRef) -> NATS:
        lock = self._locks.setdefault(hub, asyncio.Lock())
        async with lock:
            entry = self._entries.get(hub)
            if entry and not entry.nc.is_closed:
                if entry.nc.is_connected:
                    return entry.nc
                stale = entry.disconnected_since and time.monotonic() - entry.disconnected_since > STALE_AFTER_SECONDS
                if not stale:
                    raise HubNotReachable(f"hub {hub} is reconnecting")
                await self._drop(hub)
            nc = await self._connect(hub)
            return nc

    async def _connect(self, hub: HubRef) -> NATS:
        url = await self.client_url(hub)
        cred = await self.operator_credential(hub)
        entry_ref: list[_Entry] = []

        gauge = HUB_CONNECTED.labels(hub.namespace, hub.name)

        async def disconnected() -> None:
            gauge.set(0)
            if entry_ref:
                entry_ref[0].disconnected_since = time.monotonic()
            log.warning("hub %s: NATS connection lost, reconnecting", hub)

        async def reconnected() -> None:
            gauge.set(1)
            if entry_ref:
                entry_ref[0].disconnected_since = None
            log.info("hub %s: NATS connection restored", hub)

        async def error(e: Exception) -> None:
            log.debug("hub %s: NATS error: %s", hub, e)

        try:
            # nats-py retries an initial connect as often as a reconnect (forever here): bound it.
            nc = await asyncio.wait_for(nats_connection.connect(
                servers=[url],
                nkeys_seed_str=cred.seed,
                name=f"fleet-lattice-operator/{hub.namespace}/{hub.name}",
                connect_timeout=3,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                allow_reconnect=True,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            ), timeout=INITIAL_CONNECT_SECONDS)
        except Exception as exc:  # nats-py raises several unrelated types on connect failure
            raise HubNotReachable(f"cannot connect to hub {hub} at {url}: {exc}") from exc
        entry = _Entry(nc)
        entry_ref.append(entry)
        gauge.set(1)
        self._entries[hub] = entry
        log.info("hub %s: connected to %s", hub, url)
        return nc

    async def request_reload(self, hub: HubRef, system: Credential, server_id: str) -> None:
        """Ask one server of the hub to load its config files again (`$SYS.REQ.SERVER.<id>.RELOAD`, as the system
        account's user; the request reaches that server over the cluster's routes). A connection of its own, for
        this one request: it is for the rare server that missed a change."""
        url = await self.client_url(hub)
        try:
            nc = await asyncio.wait_for(nats_connection.connect(
                servers=[url], nkeys_seed_str=system.seed, connect_timeout=3, allow_reconnect=False,
                name=f"fleet-lattice-operator/{hub.namespace}/{hub.name}/sys"), timeout=INITIAL_CONNECT_SECONDS)
        except Exception as exc:  # nats-py raises several unrelated types on connect failure
            raise HubNotReachable(f"cannot connect to hub {hub} at {url} as its system user: {exc}") from exc
        try:
            reply = await nc.request(f"$SYS.REQ.SERVER.{server_id}.RELOAD", b"", timeout=RELOAD_REQUEST_SECONDS)
        except nats.errors.Error as exc:
            raise HubNotReachable(f"server {server_id} of hub {hub} did not answer a reload request: {exc}") from exc
        finally:
            await nc.close()
        error = (json.loads(reply.data or b"{}").get("error") or {}).get("description")
        if error:
            raise ReloadRefused(f"server {server_id} of hub {hub} refused to reload: {error}")

    async def _drop(self, hub: HubRef) -> None:
        HUB_CONNECTED.labels(hub.namespace, hub.name).set(0)
        entry = self._entries.pop(hub, None)
        if entry and not entry.nc.is_closed:
            try:
                await entry.nc.close()
            except (OSError, nats.errors.Error) as exc:
                # Closing flushes first; a hub that is already gone (deleted, its pods killed) fails that,
                # and the connection is discarded all the same.
                log.debug("hub %s: connection closed uncleanly: %s", hub, exc)

    async def close(self, hub: HubRef) -> None:
        async with self._locks.setdefault(hub, asyncio.Lock()):
            await self._drop(hub)

    async def close_all(self) -> None:
        for hub in list(self._entries):
            await self.close(hub)
