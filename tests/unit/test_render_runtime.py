"""Rendered configs running as real processes: a hub with silos ct-fac and msclo, and ct-fac's leaf.

What these establish about nats-server 2.15 (and the render relies on):
- a hub user's permissions apply to its leafnode connection from the leaf's point of view (publish =
  what the silo may send to the hub, subscribe = what it may receive), not inverted;
- a silo's wildcard subscription through its leaf still only receives its own subjects;
- JetStream is reachable through the leaf only via the hub's domain API ($JS.<domain>.API);
- a reload adds a silo user without disturbing a connected leaf, but changed permissions of a silo
  reach its leafnode connection only when the leaf reconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.errors import ServiceUnavailableError

from fleetlattice.api.bus import JS_DOMAIN, agent_durable, inbox_prefix
from fleetlattice.api.fleetstream import FleetStreamSpec
from fleetlattice.api.siloleaf import ExtraPermissions
from fleetlattice.clients import nats_connection
from fleetlattice.render.hub_conf import HubUsers
from fleetlattice.render.stream import render_consumer_configs, render_stream_config
from nats_processes import NatsProcess, eventually, leaf_interest
from render_fixtures import LocalHub, credential, hub_users, local_credential, running_hub, running_leaf

SILO = "ct-fac"
OTHER = "msclo"
MESSAGE_WAIT = 30.0  # a deadline for what must arrive (returned from at once); a loaded CI machine took over 5 s


@dataclass
class Lattice:
    hub: LocalHub
    leaf: NatsProcess
    leaf_client_port: int
    clients: list[Client] = field(default_factory=list)

    async def _connect(self, url: str, user: str, **options: Any) -> Client:
        client = await nats_connection.connect(servers=url, inbox_prefix=_inbox(user), **options)
        self.clients.append(client)
        return client

    async def hub_client(self, user: str = "fleet-operator", **options: Any) -> Client:
        return await self._connect(self.hub.client_url, user, nkeys_seed_str=credential(user).seed, **options)

    async def silo_client(self) -> Client:
        """A client in the silo: connected to its leaf, with the silo's own inbox prefix."""
        return await self.leaf_client(self.leaf_client_port)

    async def leaf_client(self, port: int) -> Client:
        return await self._connect(f"nats://127.0.0.1:{port}", SILO, nkeys_seed_str=local_credential(SILO).seed)

    async def reload_hub(self, users: HubUsers) -> None:
        """Rewrite the hub's config and SIGHUP it, as the reloader sidecar does; wait until it is loaded."""
        loaded_before = (await self.hub.server.monitor("varz"))["config_load_time"]
        self.hub.rewrite(users)
        self.hub.server.reload()

        async def reloaded() -> bool:
            return (await self.hub.server.monitor("varz"))["config_load_time"] != loaded_before

        await eventually("the hub to reload its config", reloaded)

    async def close_clients(self) -> None:
        for client in self.clients:
            await client.close()

    async def hub_leaf(self) -> dict[str, Any]:
        """The hub's view of the silo's leaf connection (/leafz)."""
        (leaf,) = (await self.hub.server.monitor("leafz?subs=1"))["leafs"]
        return leaf


def _inbox(user: str) -> bytes:
    return inbox_prefix(user).encode() if user in (SILO, OTHER, "forge") else b"_INBOX"


@asynccontextmanager
async def running_lattice(binary: Path, root: Path) -> AsyncIterator[Lattice]:
    async with (
        running_hub(binary, root / "hub", hub_users(SILO, OTHER)) as hub,
        running_leaf(binary, root / "leaf", hub) as (leaf, client_port),
    ):
        lattice = Lattice(hub, leaf, client_port)

        async def hub_sees_the_leaf() -> bool:
            leafs = (await hub.server.monitor("leafz"))["leafs"]
            return [(x["name"], x["account"]) for x in leafs] == [(f"{SILO}-leaf", "FLEET")]

        await eventually("the hub to list the silo's leaf in account FLEET", hub_sees_the_leaf)
        try:
            yield lattice
        finally:
            await lattice.close_clients()


@pytest.fixture
async def lattice(nats_server: Path, tmp_path: Path) -> AsyncIterator[Lattice]:
    async with running_lattice(nats_server, tmp_path) as running:
        yield running


async def test_silo_publishes_only_its_own_subjects(lattice: Lattice) -> None:
    hub, silo = await lattice.hub_client(), await lattice.silo_client()
    received = await hub.subscribe("fleet.>")
    await hub.flush()
    await leaf_interest(lattice.leaf, "fleet.>")

    for subject in (f"fleet.events.{SILO}.boot", f"fleet.install.{OTHER}.done", f"fleet.install.{SILO}.done"):
        await silo.publish(subject, b"{}")
    await silo.flush()

    # Messages from one publisher arrive in order: once the last one is in, a dropped one never comes.
    subjects = [(await received.next_msg(MESSAGE_WAIT)).subject for _ in range(2)]
    assert subjects == [f"fleet.events.{SILO}.boot", f"fleet.install.{SILO}.done"]


async def test_silo_receives_only_its_own_requests_even_with_a_wildcard(lattice: Lattice) -> None:
    hub, silo = await lattice.hub_client(), await lattice.silo_client()
    requests = await silo.subscribe("fleet.install.*.request")
    await silo.flush()

    async def hub_sees_interest() -> bool:
        return "fleet.install.*.request" in (await lattice.hub_leaf()).get("subscriptions_list", [])

    await eventually("the silo's subscription to reach the hub", hub_sees_interest)
    await hub.publish(f"fleet.install.{OTHER}.request", b"{}")
    await hub.publish(f"fleet.install.{SILO}.request", b"{}")
    await hub.flush()

    assert (await requests.next_msg(MESSAGE_WAIT)).subject == f"fleet.install.{SILO}.request"
    assert requests.pending_msgs == 0


@pytest.mark.parametrize("seed", [None, "hub", "other-local"], ids=["anonymous", "silo-hub-seed", "other-silo"])
async def test_the_leaf_admits_only_the_silos_local_nkey(lattice: Lattice, seed: str | None) -> None:
    """A pod that merely reaches the leaf's client port must not speak for the silo: without the local seed
    (no credential, the silo's hub seed, another silo's local seed) the leaf refuses the connection."""
    options = {"hub": {"nkeys_seed_str": credential(SILO).seed},
               "other-local": {"nkeys_seed_str": local_credential(OTHER).seed}}.get(seed or "", {})
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats_connection.connect(servers=f"nats://127.0.0.1:{lattice.leaf_client_port}", allow_reconnect=False,
                                      connect_timeout=10, **options)
    assert (await lattice.silo_client()).is_connected


async def test_direct_connection_as_a_silo_gets_a_permissions_violation(lattice: Lattice) -> None:
    errors: asyncio.Queue[Exception] = asyncio.Queue()

    async def on_error(error: Exception) -> None:
        await errors.put(error)

    silo = await lattice.hub_client(SILO, error_cb=on_error)
    await silo.publish(f"fleet.install.{OTHER}.done", b"{}")
    await silo.flush()
    error = await asyncio.wait_for(errors.get(), MESSAGE_WAIT)
    assert f'permissions violation for publish to "fleet.install.{OTHER}.done"' in str(error)


async def test_agent_uses_the_hubs_jetstream_through_its_leaf(lattice: Lattice) -> None:
    hub = await lattice.hub_client()
    js = hub.jetstream()
    install = FleetStreamSpec.model_validate(
        {
            "hub": "eose-hub",
            "name": "FLEET_INSTALL",
            "subjects": ["fleet.install.>"],
            "retention": "WorkQueue",
            "consumers": [
                {"name": agent_durable(s), "filterSubjects": [f"fleet.install.{s}.request"]} for s in (SILO, OTHER)
            ],
        }
    )
    state = FleetStreamSpec.model_validate(
        {"hub": "eose-hub", "kind": "KeyValue", "name": "FLEET_STATE", "subjects": ["fleet.state.>"]}
    )
    await js.add_stream(render_stream_config(state))
    await js.add_stream(render_stream_config(install))
    for consumer in render_consumer_configs(install):
        await js.add_consumer("FLEET_INSTALL", consumer)
    await js.publish(f"fleet.install.{SILO}.request", b'{"requestId":"r1"}')
    await leaf_interest(lattice.leaf, f"$JS.{JS_DOMAIN}.API.CONSUMER.>")

    silo = await lattice.silo_client()
    agent_js = silo.jetstream(domain=JS_DOMAIN, timeout=2)
    pull = await agent_js.pull_subscribe_bind(agent_durable(SILO), "FLEET_INSTALL")
    (request,) = await pull.fetch(1, timeout=MESSAGE_WAIT)
    assert request.data == b'{"requestId":"r1"}'
    await request.ack_sync()
    assert (await js.stream_info("FLEET_INSTALL")).state.messages == 0

    await agent_js.publish(f"fleet.state.{SILO}.gpu", b"4")
    assert (await (await js.key_value("FLEET_STATE")).get(f"{SILO}.gpu")).value == b"4"

    # Another silo's consumer: the leaf refuses to forward the request, so nobody answers.
    with pytest.raises(ServiceUnavailableError):
        await agent_js.consumer_info("FLEET_INSTALL", agent_durable(OTHER))

    # The silo reads its own keys of FLEET_STATE through its leaf (`nats kv get FLEET_STATE ct-fac
    # --js-domain fleet`), never another silo's.
    await js.publish(f"fleet.state.{OTHER}", b'{"pods":1}')
    await js.publish(f"fleet.state.{SILO}", b'{"pods":6}')
    # A slow machine is not a denial: the reads get the deadline MESSAGE_WAIT gives every other wait here.
    own = await silo.jetstream(domain=JS_DOMAIN, timeout=MESSAGE_WAIT).key_value("FLEET_STATE")
    assert (await own.get(SILO)).value == b'{"pods":6}'
    assert (await own.get(f"{SILO}.gpu")).value == b"4"
    with pytest.raises(nats.errors.NoRespondersError):  # the hub drops the denied request
        await own.get(OTHER)


async def test_reload_adds_a_silo_and_keeps_the_leaf_connected(lattice: Lattice) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization"):
        await lattice.hub_client("forge", allow_reconnect=False, max_reconnect_attempts=0)
    leaf_before = await lattice.hub_leaf()
    await lattice.reload_hub(hub_users(SILO, OTHER, "forge"))
    forge = await lattice.hub_client("forge")
    await forge.flush()
    assert forge.is_connected
    leaf_after = await lattice.hub_leaf()
    assert (leaf_after["id"], leaf_after["port"]) == (leaf_before["id"], leaf_before["port"])


async def test_changed_permissions_reach_a_leaf_when_it_reconnects(
    lattice: Lattice, nats_server: Path, tmp_path: Path
) -> None:
    """Why the leaf Deployment carries a permissions checksum: a reload gives a silo new permissions on
    the hub, but the leafnode connection made before it keeps the old ones until the leaf reconnects."""
    hub = await lattice.hub_client()
    received = await hub.subscribe("fleet.>")
    await hub.flush()
    await lattice.reload_hub(hub_users(SILO, OTHER, extra={SILO: ExtraPermissions(publish=["fleet.campfire.>"])}))

    old_leaf = await lattice.silo_client()
    await old_leaf.publish("fleet.campfire.hello", b"old")
    await old_leaf.publish(f"fleet.events.{SILO}.marker", b"")
    await old_leaf.flush()
    assert (await received.next_msg(MESSAGE_WAIT)).subject == f"fleet.events.{SILO}.marker"

    async with running_leaf(nats_server, tmp_path / "leaf-restarted", lattice.hub) as (leaf, port):
        await leaf_interest(leaf, "fleet.>")
        new_leaf = await lattice.leaf_client(port)
        await new_leaf.publish("fleet.campfire.hello", b"new")
        await new_leaf.flush()
        message = await received.next_msg(MESSAGE_WAIT)
        assert (message.subject, message.data) == ("fleet.campfire.hello", b"new")
