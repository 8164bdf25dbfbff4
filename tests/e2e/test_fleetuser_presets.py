"""FleetUsers against a real API server and real nats-server pods: the example users sign in with the NKey from
their Secret and can do what their preset is for and nothing else; the CLI context works; a deleted user is
signed out by a reload."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from kubehelpers import Kubectl, scratch_namespace
from localcluster import async_wait_for, wait_for
from nats.aio.client import Client as NATS

from fleet import EXAMPLES, Hub, get, is_ready, pod_identities, secret_value
from fleetlattice.clients import nats_connection

pytestmark = pytest.mark.e2e

FILES = ["fleethub-eose-hub.yaml", "fleetstream-state.yaml", "fleetstream-mdsms.yaml",
         "fleetuser-eose-observer.yaml", "fleetuser-eose-installer.yaml", "fleetuser-merostone.yaml"]
USERS = ("eose-observer", "eose-installer", "merostone")
WAIT = 15.0


@pytest.fixture(scope="module")
def fleet(operator: Any, kubectl: Kubectl) -> Iterator[Hub]:
    with scratch_namespace(kubectl, "users") as namespace:
        for name in FILES:
            kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / name))
        hub = Hub(kubectl, namespace)
        for user in USERS:
            wait_for(lambda u=user: is_ready(kubectl, "fleetuser", u, namespace), 240, f"FleetUser {user} Ready")
        # Every user's key is in the config the servers loaded: no reload lands under the tests below.
        wait_for(lambda: is_ready(kubectl, "fleethub", hub.name, namespace), 120, "FleetHub Ready with every user")
        yield hub


class User:
    """A FleetUser signed in to the hub as a client would: the seed and inbox prefix from its Secret."""

    def __init__(self, fleet: Hub, name: str) -> None:
        self.fleet, self.name = fleet, name
        self.errors: asyncio.Queue[Exception] = asyncio.Queue()

    def secret(self, key: str) -> str:
        return secret_value(self.fleet.kubectl, self.fleet.namespace, f"fleetuser-{self.name}", key)

    async def connect(self) -> NATS:
        async def on_error(error: Exception) -> None:
            await self.errors.put(error)

        return await self.fleet.connect(self.secret("seed"), inbox_prefix=self.secret("inbox-prefix").encode(),
                                        error_cb=on_error)

    async def denied(self, what: str) -> bool:
        """The server told this user it was refused `what` (other errors before it are skipped)."""
        async def match() -> None:
            while what.lower() not in str(await self.errors.get()).lower():
                pass

        try:
            await asyncio.wait_for(match(), WAIT)
        except TimeoutError:
            return False
        return True


def test_users_are_listed_with_their_secret_and_hub_url(fleet: Hub, kubectl: Kubectl) -> None:
    table = kubectl("get", "fleetusers", "-n", fleet.namespace, "-o", "wide").stdout
    assert "eose-observer" in table and "fleetuser-eose-observer" in table, table
    user = get(kubectl, "fleetuser", "eose-installer", fleet.namespace)
    assert user["status"]["url"] == f"nats://eose-hub.{fleet.namespace}.svc.cluster.local:4222"
    secret = kubectl.json("get", "secret", "fleetuser-eose-installer", "-n", fleet.namespace)
    assert secret["metadata"]["ownerReferences"][0]["uid"] == user["metadata"]["uid"]
    conf = fleet.conf_text()
    assert user["status"]["publicKey"] in conf
    assert secret_value(kubectl, fleet.namespace, "fleetuser-eose-installer", "seed") not in conf


async def test_the_observer_reads_the_fleet_and_publishes_nothing(fleet: Hub) -> None:
    operator, observer = await fleet.connect_operator(), User(fleet, "eose-observer")
    nc = await observer.connect()
    try:
        everything = await nc.subscribe("fleet.>")
        await nc.flush()
        await operator.jetstream().publish("fleet.state.ct-fac", b'{"pods":6,"health":"ok"}')
        assert (await everything.next_msg(WAIT)).subject == "fleet.state.ct-fac"
        kv = await nc.jetstream(timeout=WAIT).key_value("FLEET_STATE")
        assert json.loads((await kv.get("ct-fac")).value) == {"pods": 6, "health": "ok"}
        await nc.publish("fleet.install.ct-fac.request", b'{"v":"v622"}')
        assert await observer.denied('publish to "fleet.install.ct-fac.request"')
    finally:
        await nc.close()
        await operator.close()


async def test_the_installer_never_speaks_for_a_silo(fleet: Hub) -> None:
    operator, installer = await fleet.connect_operator(), User(fleet, "eose-installer")
    nc = await installer.connect()
    try:
        reports = await nc.subscribe("fleet.install.ct-fac.>")
        await nc.flush()
        await operator.publish("fleet.install.ct-fac.progress", b'{"step":"pull"}')
        assert (await reports.next_msg(WAIT)).subject == "fleet.install.ct-fac.progress"
        for subject in ("fleet.install.ct-fac.done", "fleet.state.ct-fac", "fleet.events.ct-fac.boot"):
            await nc.publish(subject, b"{}")
            assert await installer.denied(f'publish to "{subject}"')
    finally:
        await nc.close()
        await operator.close()


async def test_the_ingest_user_consumes_the_durable_the_operator_made(fleet: Hub) -> None:
    operator, ingest = await fleet.connect_operator(), User(fleet, "merostone")
    nc = await ingest.connect()
    try:
        info = await operator.jetstream().consumer_info("FLEET_MDSMS", "merostone")
        assert info.config.filter_subject == "fleet.mdsms.*.ingest"
        await operator.jetstream().publish("fleet.mdsms.ct-fac.ingest", b'{"lane":5}')
        pull = await nc.jetstream(timeout=WAIT).pull_subscribe_bind("merostone", "FLEET_MDSMS")
        (msg,) = await pull.fetch(1, timeout=WAIT)
        assert msg.data == b'{"lane":5}'
        await msg.ack_sync()
        await nc.subscribe("fleet.>")
        assert await ingest.denied('subscription to "fleet.>"')
    finally:
        await nc.close()
        await operator.close()


def _cli_context(fleet: Hub, kubeconfig: Path, directory: Path, user: str) -> tuple[dict[str, Any], str]:
    """`fleetlattice user context`, then the context it wrote and the seed that context points at."""
    subprocess.run([sys.executable, "-m", "fleetlattice.cli", "user", "context", user, "-n", fleet.namespace,
                    "--server", fleet.url, "--nats-config", str(directory), "--kubeconfig", str(kubeconfig)],
                   check=True, capture_output=True, timeout=60)
    context = json.loads((directory / "context" / f"{user}.json").read_text())
    return context, Path(context["nkey"]).read_text().strip()


async def test_the_cli_context_signs_in_as_the_user(fleet: Hub, kubeconfig: Path, tmp_path: Path) -> None:
    context, seed = _cli_context(fleet, kubeconfig, tmp_path, "eose-observer")
    assert context["url"] == fleet.url
    nc = await nats_connection.connect(servers=context["url"], nkeys_seed_str=seed,
                                       inbox_prefix=context["inbox_prefix"].encode(), connect_timeout=5,
                                       allow_reconnect=False)
    try:
        assert (await nc.jetstream(timeout=WAIT).stream_info("KV_FLEET_STATE")).config.name == "KV_FLEET_STATE"
    finally:
        await nc.close()


async def test_a_deleted_user_is_signed_out_by_a_reload(fleet: Hub, kubectl: Kubectl) -> None:
    pods = pod_identities(fleet.pods())
    seed = User(fleet, "eose-observer").secret("seed")
    kubectl("delete", "fleetuser", "eose-observer", "-n", fleet.namespace)

    async def refused() -> bool:
        try:
            nc = await nats_connection.connect(servers=fleet.url, nkeys_seed_str=seed, connect_timeout=5,
                                               allow_reconnect=False)
        except nats.errors.Error as exc:
            return "Authorization Violation" in str(exc)
        await nc.close()
        return False

    await async_wait_for(refused, 120, "the deleted FleetUser to be refused")
    assert pod_identities(fleet.pods()) == pods, "a user change restarted a hub server"
