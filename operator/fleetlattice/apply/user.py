"""FleetUser apply layer: the user's credential, its place in the hub config, and its ingest durable."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from fleetlattice.api.bus import user_inbox_prefix
from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.fleetuser import FleetUserSpec, IngestConsumer
from fleetlattice.apply.credentials import CredentialSecrets
from fleetlattice.apply.hub import HubState, LeafIndex
from fleetlattice.apply.install_jetstream import jetstream
from fleetlattice.clients.hub_connections import HubConnections
from fleetlattice.clients.kube import Kube
from fleetlattice.logic.conditions import Cond, NotReady
from fleetlattice.logic.credentials import b64
from fleetlattice.render.names import HubRef, UserRef

log = logging.getLogger(__name__)

URL_KEY = "url"
INBOX_PREFIX_KEY = "inbox-prefix"


def ingest_name(ingest: IngestConsumer | None) -> str:
    """`<stream>/<durable>`, as status keeps it: what to delete when the spec moves the durable."""
    return f"{ingest.stream}/{ingest.durable}" if ingest else ""


class UserState:
    def __init__(self, kube: Kube, hubs: HubState, connections: HubConnections,
                 credentials: CredentialSecrets) -> None:
        self.kube, self.hubs, self.connections, self.credentials = kube, hubs, connections, credentials

    async def apply(self, body: dict[str, Any], spec: FleetUserSpec, hub_spec: FleetHubSpec | None,
                    leaves: LeafIndex, *, reread: bool = False) -> tuple[dict[str, Any], list[Cond]]:
        """Everything a FleetUser owns; returns its status (`hub_spec`: its hub's, None when there is none;
        `leaves`: see HubState.sync). Raises NotReady with the reason otherwise."""
        meta, status = body["metadata"], body.get("status") or {}
        namespace, name = meta["namespace"], meta["name"]
        if hub_spec is None:
            raise NotReady("HubNotFound", f"FleetHub {namespace}/{spec.hub} does not exist")
        hub = HubRef(spec.hub, namespace)
        url = hub.client_url(hub_spec.ports.client)
        user = UserRef(name)
        cred = await self.credentials.ensure(body, user.credentials_secret, name, user.labels,
                                             {URL_KEY: b64(url), INBOX_PREFIX_KEY: b64(user_inbox_prefix(name))},
                                             reread=reread)
        if self.hubs.lacks_user(hub, cred.public_key) or meta.get("generation") != status.get("observedGeneration"):
            await self.hubs.sync(namespace, spec.hub, leaves)
        await self._ensure_ingest(hub, spec.ingest, status.get("ingestConsumer", ""))
        fields = {"credentialsSecret": user.credentials_secret, "publicKey": cred.public_key, "url": url,
                  "inboxPrefix": user_inbox_prefix(name), "ingestConsumer": ingest_name(spec.ingest)}
        message = f"in the config of FleetHub {spec.hub}; sign in with the NKey in Secret {user.credentials_secret}"
        return fields, [Cond.true("Ready", "Configured", message)]

    async def _ensure_ingest(self, hub: HubRef, ingest: IngestConsumer | None, previous: str) -> None:
        """The Ingest role's durable: created (or updated) by the operator, so the user itself never needs the
        right to create or delete consumers. A durable the spec moved away from is deleted."""
        if previous and previous != ingest_name(ingest):
            await self.delete_ingest(hub, previous)
        if ingest is None:
            return
        js = await jetstream(self.connections, hub)
        try:
            await js.add_consumer(ingest.stream, ConsumerConfig(
                durable_name=ingest.durable, ack_policy=AckPolicy.EXPLICIT, filter_subject=ingest.filter_subject))
        except NotFoundError as exc:
            raise NotReady("StreamNotFound", f"stream {ingest.stream} does not exist on FleetHub {hub.name}") from exc

    async def delete_ingest(self, hub: HubRef, name: str) -> None:
        stream, durable = name.split("/", 1)
        js = await jetstream(self.connections, hub)
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, durable)

    async def deleted(self, namespace: str, name: str, spec: dict[str, Any], status: dict[str, Any],
                      leaves: LeafIndex) -> None:
        """The FleetUser is gone: its user leaves the hub config (its Secret goes by garbage collection)."""
        self.credentials.forget(namespace, UserRef(name).credentials_secret)
        hub = HubRef(spec["hub"], namespace)
        if status.get("ingestConsumer"):
            try:
                await self.delete_ingest(hub, status["ingestConsumer"])
            except NotReady as exc:
                log.warning("FleetUser %s/%s: durable %s left on the hub: %s", namespace, name,
                            status["ingestConsumer"], exc)
        await self.hubs.sync(namespace, spec["hub"], leaves)
