"""FleetUser: the model's rules, the rendered permissions, and each preset against a real nats-server running the
rendered config — it can do what it is for and nothing else."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import APIError

from fleetlattice.api.bus import user_inbox_prefix
from fleetlattice.api.fleetstream import FleetStreamSpec
from fleetlattice.api.fleetuser import FleetUserSpec
from fleetlattice.clients import nats_connection
from fleetlattice.render.hub_conf import FleetUserConf, HubUsers
from fleetlattice.render.stream import render_stream_config
from fleetlattice.render.user_permissions import SILO_ONLY_SUBJECTS, user_permissions
from nats_processes import eventually
from render_fixtures import HUB, credential, hub_users, running_hub

SILO, OTHER = "ct-fac", "msclo"
# A deadline for what must arrive, returned from as soon as it does: a loaded CI machine once took over 5 s
# to deliver a core message here, so it is generous. Nothing here waits it out except on a failure.
MESSAGE_WAIT = 30.0
USERS = {
    "eose-observer": {"roles": ["Observer"]},
    "eose-installer": {"roles": ["Installer"], "silos": [SILO]},
    "merostone": {"roles": ["Ingest"], "ingest": {"stream": "FLEET_MDSMS", "durable": "merostone"}},
}


def spec(**fields: Any) -> FleetUserSpec:
    return FleetUserSpec.model_validate({"hub": HUB.name, **fields})


@pytest.mark.parametrize(("fields", "message"), [
    ({"roles": ["Ingest"]}, "role Ingest and spec.ingest go together"),
    ({"ingest": {"stream": "FLEET_MDSMS", "durable": "m"}}, "role Ingest and spec.ingest go together"),
    ({"permissions": {"publish": {"allow": ["$JS.API.>"]}}}, "extra permissions name plain subjects"),
    ({"permissions": {"subscribe": {"allow": ["_INBOX.>"]}}}, "extra permissions name plain subjects"),
    ({"read": {"streams": ["FLEET_INSTALL"]}}, "FLEET_INSTALL is the install work queue"),
    ({"roles": ["Ingest"], "ingest": {"stream": "FLEET_INSTALL", "durable": "x"}}, "read by the silos' agents only"),
    ({"roles": ["Root"]}, "Input should be 'Observer', 'Installer' or 'Ingest'"),
    ({"silos": ["install"]}, "a silo may not be named after a word of the subject map"),
])
def test_the_model_refuses_what_would_widen_a_user(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**fields)


def test_no_user_may_publish_what_only_silos_publish_whatever_it_lists() -> None:
    permissions = user_permissions("app", spec(permissions={"publish": {"allow": ["fleet.>"]}}))
    assert permissions["publish"]["allow"] == ["fleet.>"]
    assert set(SILO_ONLY_SUBJECTS) <= set(permissions["publish"]["deny"])
    assert "fleet.install.*.done" in permissions["publish"]["deny"]


def test_a_user_with_nothing_to_publish_publishes_nothing() -> None:
    """nats-server takes an empty allow list as "allow everything"."""
    permissions = user_permissions("watcher", spec(permissions={"subscribe": {"allow": ["fleet.events.>"]}}))
    assert permissions["publish"] == {"allow": [], "deny": [">"]}
    assert permissions["subscribe"]["allow"] == [f"{user_inbox_prefix('watcher')}.>", "fleet.events.>"]


def test_the_installer_reaches_only_its_silos() -> None:
    permissions = user_permissions("i", spec(roles=["Installer"], silos=[SILO]))
    assert [s for s in permissions["publish"]["allow"] if s.startswith("fleet.")] == [
        f"fleet.install.{SILO}.request", f"fleet.install.{SILO}.scrub"]
    assert f"fleet.install.{SILO}.>" in permissions["subscribe"]["allow"]
    every = user_permissions("i", spec(roles=["Installer"]))
    assert "fleet.install.*.request" in every["publish"]["allow"]


def test_inboxes_of_users_never_nest() -> None:
    assert user_inbox_prefix("a.b") != user_inbox_prefix("a") and not user_inbox_prefix("a.b").startswith(
        user_inbox_prefix("a") + ".")


def fleet_users(*names: str) -> HubUsers:
    base = hub_users(SILO, OTHER)
    return HubUsers(base.operator, base.system, base.silos, tuple(
        FleetUserConf(n, credential(n).public_key, spec(**USERS[n])) for n in names))


@dataclass
class Fleet:
    """A hub running the rendered config with the three preset users, and the standard streams."""

    url: str
    clients: list[Client] = field(default_factory=list)
    errors: dict[str, asyncio.Queue[Exception]] = field(default_factory=dict)

    async def connect(self, user: str) -> Client:
        queue: asyncio.Queue[Exception] = self.errors.setdefault(user, asyncio.Queue())

        async def on_error(error: Exception) -> None:
            await queue.put(error)

        inbox = user_inbox_prefix(user) if user in USERS else "_INBOX"
        client = await nats_connection.connect(servers=self.url, nkeys_seed_str=credential(user).seed,
                                               inbox_prefix=inbox.encode(), error_cb=on_error, allow_reconnect=False)
        self.clients.append(client)
        return client

    async def denied(self, user: str, what: str) -> bool:
        """Whether the server reports a permissions violation naming `what` to `user` within MESSAGE_WAIT
        (lowercased, as nats-py reports it); other errors before it are skipped."""
        async def next_match() -> None:
            while what.lower() not in str(await self.errors[user].get()).lower():
                pass

        try:
            await asyncio.wait_for(next_match(), MESSAGE_WAIT)
        except TimeoutError:
            return False
        return True


def _stream(name: str, kind: str = "Stream", **fields: Any) -> StreamConfig:
    return render_stream_config(FleetStreamSpec.model_validate({"hub": HUB.name, "name": name, "kind": kind,
                                                                **fields}))


@asynccontextmanager
async def running_fleet(binary: Path, root: Path) -> AsyncIterator[Fleet]:
    async with running_hub(binary, root, fleet_users(*USERS)) as hub:
        fleet = Fleet(hub.client_url)
        js = (await fleet.connect("fleet-operator")).jetstream()
        await js.add_stream(_stream("FLEET_STATE", "KeyValue", subjects=["fleet.state.>"]))
        await js.add_stream(_stream("FLEET_INSTALL", subjects=["fleet.install.>"], retention="WorkQueue"))
        await js.add_stream(_stream("FLEET_MDSMS", subjects=["fleet.mdsms.>"]))
        # What the operator does for an Ingest user (apply/user.py).
        await js.add_consumer("FLEET_MDSMS", ConsumerConfig(durable_name="merostone", ack_policy=AckPolicy.EXPLICIT))
        try:
            yield fleet
        finally:
            for client in fleet.clients:
                await client.close()


@pytest.fixture
async def fleet(nats_server: Path, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with running_fleet(nats_server, tmp_path) as running:
        yield running


async def test_the_observer_watches_the_fleet_and_reads_its_state(fleet: Fleet) -> None:
    operator, observer = await fleet.connect("fleet-operator"), await fleet.connect("eose-observer")
    everything = await observer.subscribe("fleet.>")
    await observer.flush()
    await operator.jetstream().publish(f"fleet.state.{SILO}", b'{"pods":6}')
    assert (await everything.next_msg(MESSAGE_WAIT)).subject == f"fleet.state.{SILO}"

    kv = await observer.jetstream(timeout=MESSAGE_WAIT).key_value("FLEET_STATE")
    assert (await kv.get(SILO)).value == b'{"pods":6}'
    watch = await kv.watchall()  # `nats kv watch FLEET_STATE`: an ordered consumer on the user's inbox
    update = await watch.updates(MESSAGE_WAIT)
    assert (update.key, update.value) == (SILO, b'{"pods":6}')
    await watch.stop()

    await observer.publish(f"fleet.install.{SILO}.request", b'{"v":"v622"}')
    assert await fleet.denied("eose-observer", f'publish to "fleet.install.{SILO}.request"')
    unacknowledged = await observer.jetstream(timeout=1).key_value("FLEET_STATE")
    with pytest.raises(nats.errors.TimeoutError):  # a KV write is a silo's: denied, so never acknowledged
        await unacknowledged.put(SILO, b'{"pods":0}')
    assert await fleet.denied("eose-observer", f'publish to "$KV.FLEET_STATE.{SILO}"')


async def test_the_installer_requests_and_scrubs_its_silo_only(fleet: Fleet) -> None:
    operator, installer = await fleet.connect("fleet-operator"), await fleet.connect("eose-installer")
    reports = await installer.subscribe(f"fleet.install.{SILO}.>")  # `nats sub 'fleet.install.ct-fac.>'`
    await installer.flush()
    await installer.publish(f"fleet.install.{SILO}.request", b'{"v":"v622"}')
    await installer.publish(f"fleet.install.{SILO}.scrub", b'{"reason":"engagement-complete"}')
    await installer.flush()
    async def both_stored() -> bool:
        # The stream stores a core publish after the server has it: flush alone is no guarantee (seen under load).
        return (await operator.jetstream().stream_info("FLEET_INSTALL")).state.messages == 2

    await eventually("the request and the scrub to be stored in FLEET_INSTALL", both_stored)
    await operator.publish(f"fleet.install.{SILO}.done", b'{"pods":6}')
    subjects = [(await reports.next_msg(MESSAGE_WAIT)).subject for _ in range(3)]
    assert subjects[-1] == f"fleet.install.{SILO}.done"

    for subject in (f"fleet.install.{OTHER}.request", f"fleet.install.{SILO}.done", f"fleet.state.{SILO}"):
        await installer.publish(subject, b"{}")
        assert await fleet.denied("eose-installer", f'publish to "{subject}"')
    await installer.subscribe(f"fleet.install.{OTHER}.>")
    assert await fleet.denied("eose-installer", f'subscription to "fleet.install.{OTHER}.>"')


async def test_the_ingest_user_pulls_and_acks_its_durable_and_nothing_else(fleet: Fleet) -> None:
    operator, ingest = await fleet.connect("fleet-operator"), await fleet.connect("merostone")
    await operator.jetstream().publish(f"fleet.mdsms.{SILO}.ingest", b'{"lane":5}')
    js = ingest.jetstream(timeout=MESSAGE_WAIT)
    pull = await js.pull_subscribe_bind("merostone", "FLEET_MDSMS")
    (msg,) = await pull.fetch(1, timeout=MESSAGE_WAIT)
    assert msg.data == b'{"lane":5}'
    await msg.ack_sync()

    async def acked() -> bool:
        info = await operator.jetstream().consumer_info("FLEET_MDSMS", "merostone")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually("the ack to reach the durable", acked)
    # No consumer of its own, no other stream, no state: a denied request is never answered, so a short deadline.
    js = ingest.jetstream(timeout=1)
    with pytest.raises((APIError, nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await js.add_consumer("FLEET_MDSMS", ConsumerConfig(durable_name="thief", ack_policy=AckPolicy.EXPLICIT))
    with pytest.raises((APIError, nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await js.stream_info("FLEET_STATE")
    await ingest.subscribe("fleet.>")
    assert await fleet.denied("merostone", 'subscription to "fleet.>"')


async def test_a_user_added_by_reload_signs_in(nats_server: Path, tmp_path: Path) -> None:
    async with running_hub(nats_server, tmp_path, fleet_users()) as hub:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats_connection.connect(servers=hub.client_url, nkeys_seed_str=credential("eose-observer").seed,
                                          allow_reconnect=False)
        loaded_before = (await hub.server.monitor("varz"))["config_load_time"]
        hub.rewrite(fleet_users("eose-observer"))
        hub.server.reload()

        async def reloaded() -> bool:
            return (await hub.server.monitor("varz"))["config_load_time"] != loaded_before

        await eventually("the hub to reload", reloaded)
        client = await nats_connection.connect(servers=hub.client_url, nkeys_seed_str=credential("eose-observer").seed,
                                               allow_reconnect=False)
        await client.close()


def test_the_nats_cli_context_points_at_an_owner_only_seed(tmp_path: Path) -> None:
    from fleetlattice.cli.user_context import UserContext, write_files

    ctx = UserContext("eose-observer", "nats://127.0.0.1:4222", credential("eose-observer").seed,
                      user_inbox_prefix("eose-observer"))
    files = ctx.files(tmp_path)
    write_files(files)
    context = json.loads((tmp_path / "context" / "eose-observer.json").read_text())
    assert context["url"] == "nats://127.0.0.1:4222" and context["inbox_prefix"] == "_INBOX_user_eose-observer"
    seed = Path(context["nkey"])
    assert seed.read_text().strip() == credential("eose-observer").seed
    assert seed.stat().st_mode & 0o777 == 0o600
