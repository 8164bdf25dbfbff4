"""The operator against a real API server and real nats-server pods: the example fleet comes up,
leaves connect, permissions hold, reloads do not restart, drift is repaired, restarts are no-ops."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import nats
import nats.errors
import pytest
from kubehelpers import Kubectl, create_namespace, delete_namespace, scratch_namespace
from localcluster import async_wait_for, wait_for
from nats.js.api import ConsumerConfig, DiscardPolicy, RetentionPolicy, StorageType
from nats.js.errors import APIError, KeyNotFoundError, NotFoundError

from argocd import argocd_health
from fleet import EXAMPLES, Hub, condition, get, is_ready, pod_identities, secret_value, service_url
from fleetlattice.api.defaults import FIELD_MANAGER
from fleetlattice.clients import nats_connection
from fleetlattice.render.names import UserRef

pytestmark = pytest.mark.e2e

FLEET_FILES = [p for p in sorted(EXAMPLES.glob("*.yaml")) if not p.name.startswith("siloinstall")]
FLEET_USERS = [p.stem.removeprefix("fleetuser-") for p in FLEET_FILES if p.name.startswith("fleetuser-")]
STREAMS = {"FLEET_EVENTS": "fleet-events", "KV_FLEET_STATE": "fleet-state", "FLEET_INSTALL": "fleet-install",
           "FLEET_MDSMS": "fleet-mdsms", "FLEET_LEAN": "fleet-lean"}


@pytest.fixture(scope="module")
def fleet(operator: Any, kubectl: Kubectl) -> Iterator[Hub]:
    """The example fleet in its own namespace, up and Ready."""
    with scratch_namespace(kubectl, "fleet") as namespace:
        for path in FLEET_FILES:
            kubectl("apply", "-n", namespace, "-f", str(path))
        hub = Hub(kubectl, namespace)
        wait_for(lambda: is_ready(kubectl, "fleethub", hub.name, namespace), 240, "FleetHub eose-hub Ready")
        for stream in STREAMS.values():
            wait_for(lambda s=stream: is_ready(kubectl, "fleetstream", s, namespace), 120,
                     f"FleetStream {stream} Ready")
        # Settled: both in-cluster silos' users are loaded, so no reload happens under the tests below.
        for silo in ("ct-fac", "msclo"):
            wait_for(lambda s=silo: is_ready(kubectl, "siloleaf", s, namespace), 180, f"SiloLeaf {silo} Ready")
        # The example FleetUsers are hub users too: one configured late (merostone waits for FLEET_MDSMS) would
        # reload the hub under the permission tests.
        for user in FLEET_USERS:
            wait_for(lambda u=user: is_ready(kubectl, "fleetuser", u, namespace), 180, f"FleetUser {user} Ready")
        wait_for(lambda: is_ready(kubectl, "fleethub", hub.name, namespace), 120, "FleetHub Ready with every silo")
        # The exact state the permission tests need: the servers have loaded the config with every identity in it, so
        # no reload is still on its way. Ready conditions alone do not say so: the FleetHub's status is refreshed
        # every 10 s, and a FleetUser is Ready once its user is in the config written, not in the config loaded (a
        # late reload dropped a subscription's interest under test_silo_credential_is_scoped_to_its_silo).
        seeds = [hub.silo_seed(silo) for silo in ("ct-fac", "msclo")] + [
            secret_value(kubectl, namespace, UserRef(user).credentials_secret, "seed") for user in FLEET_USERS]
        wait_for(lambda: asyncio.run(_all_sign_in(hub, seeds)), 120, "every example identity signs in at the hub")
        yield hub


async def _all_sign_in(hub: Hub, seeds: list[str]) -> bool:
    for seed in seeds:
        try:
            nc = await hub.connect(seed, allow_reconnect=False)
        except Exception:  # not loaded yet: Authorization Violation
            return False
        await nc.close()
    return True


def test_hub_status_reads_the_real_servers(fleet: Hub, kubectl: Kubectl) -> None:
    status = get(kubectl, "fleethub", fleet.name, fleet.namespace)["status"]
    assert status["ready"] == "1/1"
    assert status["version"] == "2.15.1"
    assert status["observedGeneration"] == 1
    assert status["servers"][0]["configDigest"].startswith("sha256:")
    assert condition({"status": status}, "Degraded")["status"] == "False"
    table = kubectl("get", "fleethub", "-n", fleet.namespace).stdout
    assert "1/1" in table
    assert "2.15.1" in table


async def test_streams_have_the_spec_config_on_the_server(fleet: Hub) -> None:
    nc = await fleet.connect_operator()
    try:
        js = nc.jetstream()
        events = (await js.stream_info("FLEET_EVENTS")).config
        assert events.subjects == ["fleet.events.>"]
        assert events.max_age == 7 * 86400
        assert events.retention == RetentionPolicy.LIMITS
        assert events.storage == StorageType.FILE
        assert (events.max_msg_size, events.max_msgs_per_subject, events.discard) == (16 * 1024, 1000,
                                                                                      DiscardPolicy.OLD)
        install = (await js.stream_info("FLEET_INSTALL")).config
        assert install.retention == RetentionPolicy.WORK_QUEUE
        # Bounded, and full means "refuse new", never "drop requests not yet performed".
        assert (install.max_bytes, install.max_msg_size, install.discard) == (2**30, 64 * 1024, DiscardPolicy.NEW)
        mdsms = (await js.stream_info("FLEET_MDSMS")).config
        assert (mdsms.retention, mdsms.max_age) == (RetentionPolicy.INTEREST, 86400)
        assert (mdsms.max_bytes, mdsms.max_msg_size, mdsms.discard) == (2**30, 2**20, DiscardPolicy.NEW)
        lean = (await js.stream_info("FLEET_LEAN")).config
        assert lean.max_age == 30 * 86400
        assert (lean.max_bytes, lean.max_msg_size, lean.discard) == (2**30, 2**20, DiscardPolicy.OLD)
        state = (await js.stream_info("KV_FLEET_STATE")).config
        assert state.max_msgs_per_subject == 5
        assert (state.max_bytes, state.max_msg_size) == (256 * 2**20, 16 * 1024)
        assert "fleet.state.>" in state.subjects
    finally:
        await nc.close()


async def test_plain_publish_lands_in_the_state_bucket(fleet: Hub) -> None:
    nc = await fleet.connect_operator()
    try:
        await nc.publish("fleet.state.ct-fac", b'{"pods":6,"health":"ok"}')
        await nc.flush()
        kv = await nc.jetstream().key_value("FLEET_STATE")
        entry = await kv.get("ct-fac")
        assert json.loads(entry.value) == {"pods": 6, "health": "ok"}
    finally:
        await nc.close()


def test_in_cluster_leaf_connects(fleet: Hub, kubectl: Kubectl) -> None:
    def connected() -> dict[str, Any] | None:
        leaf = get(kubectl, "siloleaf", "ct-fac", fleet.namespace)
        return leaf if leaf.get("status", {}).get("connected") else None

    leaf = wait_for(connected, 180, "SiloLeaf ct-fac CONNECTED")
    assert condition(leaf, "Ready")["status"] == "True"
    assert leaf["status"]["connectedSince"]
    table = kubectl("get", "siloleaves", "-n", fleet.namespace).stdout
    assert any(line.split()[:4] == ["ct-fac", "ct-fac", "eose-hub", "true"] for line in table.splitlines()), table
    forge = get(kubectl, "siloleaf", "forge", fleet.namespace)
    assert forge["status"]["connected"] is False  # External: waits for the bundle to be applied elsewhere
    assert wait_for(lambda: get(kubectl, "fleethub", fleet.name, fleet.namespace)["status"]["leafConnections"] >= 2,
                    120, "hub reports both in-cluster leaves")


async def test_in_cluster_leaf_admits_only_the_silos_local_nkey(fleet: Hub, kubectl: Kubectl) -> None:
    """A pod that merely reaches ct-fac-leaf:4222 must not speak for ct-fac; the local Secret's seed may."""
    url = service_url(kubectl, fleet.namespace, "ct-fac-leaf")
    for seed in (None, fleet.silo_seed("ct-fac"), fleet.local_seed("msclo")):
        options = {"nkeys_seed_str": seed} if seed else {}
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats_connection.connect(servers=url, allow_reconnect=False, connect_timeout=15, **options)
    nc = await nats_connection.connect(servers=url, nkeys_seed_str=fleet.local_seed("ct-fac"), connect_timeout=15,
                                       inbox_prefix=b"_INBOX_ct-fac")
    try:
        await nc.flush(timeout=5)
        assert nc.is_connected
    finally:
        await nc.close()
    policy = kubectl.json("get", "networkpolicy", "ct-fac-leaf", "-n", fleet.namespace)
    assert policy["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]


async def _next_subject(sub: Any) -> str:
    """The subject of the next message `sub` gets, waited for with a deadline (a slow machine is not a denial)."""
    return (await sub.next_msg(timeout=30)).subject


async def test_silo_credential_is_scoped_to_its_silo(fleet: Hub) -> None:
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    observer = await fleet.connect_operator()
    silo = await fleet.connect(fleet.silo_seed("ct-fac"), error_cb=on_error, inbox_prefix=b"_INBOX_ct-fac")
    try:
        # Messages of one publisher reach a connection in the order they were sent: once the allowed message
        # sent last is in, a forbidden one sent first would be in too. No receive window to guess.
        fake_done = await observer.subscribe("fleet.install.msclo.done")
        boot = await observer.subscribe("fleet.events.ct-fac.boot")
        await observer.flush()
        await silo.publish("fleet.install.msclo.done", b'{"pods":6}')
        await silo.publish("fleet.events.ct-fac.boot", b'{"event":"boot"}')
        await silo.flush()
        assert await _next_subject(boot) == "fleet.events.ct-fac.boot", "ct-fac could not publish its own event"
        assert fake_done.pending_msgs == 0, "ct-fac faked msclo's done"

        stolen = await silo.subscribe("fleet.install.msclo.request")
        own = await silo.subscribe("fleet.install.ct-fac.request")
        await silo.flush()
        await observer.publish("fleet.install.msclo.request", b"{}")
        await observer.publish("fleet.install.ct-fac.request", b"{}")
        await observer.flush()
        # One connection reads its messages in order: once the own request (sent last) is in, msclo's would be too.
        assert await _next_subject(own) == "fleet.install.ct-fac.request"
        assert stolen.pending_msgs == 0, "ct-fac received msclo's request"
        violations = " ".join(str(e) for e in errors).lower()
        assert "permissions violation" in violations
        assert "fleet.install.msclo.done" in violations
        assert "fleet.install.msclo.request" in violations
    finally:
        await silo.close()
        await observer.close()


async def test_a_silo_writes_only_its_declared_state_keys_and_no_oversized_message(fleet: Hub,
                                                                                   kubectl: Kubectl) -> None:
    """Each silo's footprint is bounded: it writes only its own FLEET_STATE key, its agent's and the aspects its
    SiloLeaf declares (ct-fac: the default gpu and memory), at the hub and through its leaf, and the streams
    refuse a message over their maxMsgSize."""
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    mark = uuid.uuid4().hex.encode()
    observer = await fleet.connect_operator()
    leaf = await nats_connection.connect(servers=service_url(kubectl, fleet.namespace, "ct-fac-leaf"),
                                         connect_timeout=15, nkeys_seed_str=fleet.local_seed("ct-fac"),
                                         inbox_prefix=b"_INBOX_ct-fac")
    silo = await fleet.connect(fleet.silo_seed("ct-fac"), error_cb=on_error, inbox_prefix=b"_INBOX_ct-fac")
    try:
        kv = await observer.jetstream().key_value("FLEET_STATE")

        async def holds(key: str) -> bool:
            try:
                return (await kv.get(key)).value == mark
            except KeyNotFoundError:
                return False

        # One publisher's messages are stored in the order sent: once the declared key sent last holds the mark,
        # an undeclared one sent first would hold it too.
        await leaf.publish("fleet.state.ct-fac.disk", mark)
        await leaf.publish("fleet.state.ct-fac.gpu", mark)
        await leaf.flush()
        await async_wait_for(lambda: holds("ct-fac.gpu"), 30, "ct-fac.gpu written through the leaf")
        await silo.publish("fleet.state.ct-fac.disk", mark)
        await silo.publish("$KV.FLEET_STATE.ct-fac.disk", mark)
        await silo.publish("fleet.state.ct-fac.memory", mark)
        await silo.flush()
        await async_wait_for(lambda: holds("ct-fac.memory"), 30, "ct-fac.memory written at the hub")
        assert not await holds("ct-fac.disk"), "ct-fac wrote a state key its SiloLeaf does not declare"
        violations = " ".join(str(e) for e in errors).lower()
        assert "permissions violation" in violations and "fleet.state.ct-fac.disk" in violations

        js = silo.jetstream()
        await js.publish("fleet.events.ct-fac.sized", b"x" * 15 * 1024)
        for subject in ("fleet.events.ct-fac.sized", "fleet.state.ct-fac.memory"):
            with pytest.raises(APIError, match="maximum"):
                await js.publish(subject, b"x" * (16 * 1024 + 1))
        assert await holds("ct-fac.memory"), "an oversized value replaced ct-fac.memory"
    finally:
        await silo.close()
        await leaf.close()
        await observer.close()


def test_adding_a_silo_reloads_without_restarting_hub_pods(fleet: Hub, kubectl: Kubectl) -> None:
    before = pod_identities(fleet.pods())
    loaded_before = {s["name"]: s["configLoadTime"]
                     for s in get(kubectl, "fleethub", fleet.name, fleet.namespace)["status"]["servers"]}
    leaf = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf", "metadata": {"name": "gamma"},
            "spec": {"silo": "gamma", "hub": fleet.name}}
    kubectl("apply", "-n", fleet.namespace, "-f", "-", input=json.dumps(leaf))
    wait_for(lambda: get(kubectl, "siloleaf", "gamma", fleet.namespace).get("status", {}).get("connected"), 180,
             "new silo gamma connected")
    after = pod_identities(fleet.pods())
    assert after == before, "hub pods were restarted to add a silo"
    servers = get(kubectl, "fleethub", fleet.name, fleet.namespace)["status"]["servers"]
    assert all(s["configLoadTime"] > loaded_before[s["name"]] for s in servers), "config was not reloaded"
    wait_for(lambda: is_ready(kubectl, "fleethub", fleet.name, fleet.namespace), 60, "hub Ready after reload")


async def test_stream_deleted_by_hand_is_recreated(fleet: Hub) -> None:
    nc = await fleet.connect_operator()
    try:
        js = nc.jetstream()
        await js.delete_stream("FLEET_LEAN")

        async def back() -> bool:
            return (await js.stream_info("FLEET_LEAN")).config.max_age == 30 * 86400

        await async_wait_for(back, 90, "FLEET_LEAN recreated within a resync")
    finally:
        await nc.close()


def test_argocd_health_of_the_live_fleet(fleet: Hub, kubectl: Kubectl) -> None:
    """The chart's health script on real objects: everything Ready is Healthy, the External leaf waits."""
    objects = [("fleethub", fleet.name), ("siloleaf", "ct-fac"), *(("fleetstream", s) for s in STREAMS.values())]
    for kind, name in objects:
        status, message = argocd_health(get(kubectl, kind, name, fleet.namespace))
        assert status == "Healthy", f"{kind}/{name}: {status} {message}"
    assert argocd_health(get(kubectl, "siloleaf", "forge", fleet.namespace))[0] == "Progressing"


async def test_refused_change_leaves_the_stream_and_says_why(fleet: Hub, kubectl: Kubectl) -> None:
    kubectl("patch", "fleetstream", "fleet-install", "-n", fleet.namespace, "--type=merge",
            "-p", '{"spec":{"retention":"Limits"}}')

    def refused() -> dict[str, Any] | None:
        cond = condition(get(kubectl, "fleetstream", "fleet-install", fleet.namespace), "Ready")
        return cond if cond.get("reason") == "ImmutableFieldChanged" else None

    cond = wait_for(refused, 60, "Ready=False ImmutableFieldChanged")
    assert cond["status"] == "False"
    assert "retention" in cond["message"]
    assert argocd_health(get(kubectl, "fleetstream", "fleet-install", fleet.namespace))[0] == "Degraded"
    nc = await fleet.connect_operator()
    try:
        info = await nc.jetstream().stream_info("FLEET_INSTALL")
        assert info.config.retention == RetentionPolicy.WORK_QUEUE
    finally:
        await nc.close()
    kubectl("patch", "fleetstream", "fleet-install", "-n", fleet.namespace, "--type=merge",
            "-p", '{"spec":{"retention":"WorkQueue"}}')
    wait_for(lambda: is_ready(kubectl, "fleetstream", "fleet-install", fleet.namespace), 60, "Ready again")


def _children_versions(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    items = kubectl.json("get", "statefulsets,services,configmaps,secrets,deployments,poddisruptionbudgets",
                         "-n", namespace, "-l", "app.kubernetes.io/part-of=fleet-lattice")["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


def _resumed(operator: Any) -> int:
    log = operator.log_text()
    return log.count("Handler 'stream_changed' succeeded") + log.count("Handler 'hub_changed' succeeded")


async def test_operator_restart_changes_nothing(fleet: Hub, kubectl: Kubectl, operator: Any) -> None:
    wait_for(lambda: all(is_ready(kubectl, "fleetstream", s, fleet.namespace) for s in STREAMS.values()), 60,
             "all streams Ready")
    before = _children_versions(kubectl, fleet.namespace)
    pods = pod_identities(fleet.pods())
    nc = await fleet.connect_operator()
    try:
        created = {n: (await nc.jetstream().stream_info(n)).created for n in STREAMS}
    finally:
        await nc.close()
    operator.restart()
    # kopf logs each resumed object's handler; wait until the new process has resumed them all.
    wait_for(lambda: _resumed(operator) >= len(STREAMS) + 1, 120, "operator resumed the fleet")
    assert _children_versions(kubectl, fleet.namespace) == before
    assert pod_identities(fleet.pods()) == pods
    nc = await fleet.connect_operator()
    try:
        assert {n: (await nc.jetstream().stream_info(n)).created for n in STREAMS} == created
    finally:
        await nc.close()


def _hub_conf(fleet: Hub) -> str:
    return fleet.conf_text()


def test_deleting_a_silo_leaf_removes_its_user(fleet: Hub, kubectl: Kubectl) -> None:
    gamma = secret_value(kubectl, fleet.namespace, "siloleaf-gamma-credentials", "nkey")
    assert gamma in _hub_conf(fleet)
    kubectl("delete", "siloleaf", "gamma", "-n", fleet.namespace, "--ignore-not-found")
    wait_for(lambda: gamma not in _hub_conf(fleet), 60, "gamma's public key removed from the hub config")
    assert secret_value(kubectl, fleet.namespace, "siloleaf-ct-fac-credentials", "nkey") in _hub_conf(fleet)


def test_deleting_a_credential_secret_rotates_it(fleet: Hub, kubectl: Kubectl) -> None:
    """Rotation as documented: the Secret goes, the next resync makes a new NKey, and the hub config holds the
    new public key in place of the old one (the operator knows Secrets from memory between resyncs)."""
    leaf = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf", "metadata": {"name": "rotor"},
            "spec": {"silo": "rotor", "hub": fleet.name, "leaf": {"mode": "External"}}}
    kubectl("apply", "-n", fleet.namespace, "-f", "-", input=json.dumps(leaf))
    secret = "siloleaf-rotor-credentials"
    try:
        def public_key() -> str:
            found = kubectl("get", "secret", secret, "-n", fleet.namespace, "--ignore-not-found", "-o",
                            "jsonpath={.data.nkey}").stdout.strip()
            return base64.b64decode(found).decode() if found else ""

        wait_for(lambda: public_key() and public_key() in _hub_conf(fleet), 60, "rotor's key in the hub config")
        old = public_key()
        kubectl("delete", "secret", secret, "-n", fleet.namespace)

        def rotated() -> bool:
            new, conf = public_key(), _hub_conf(fleet)
            return bool(new) and new != old and new in conf and old not in conf

        wait_for(rotated, 90, "a new NKey in the Secret and in the hub config, the old one gone")
    finally:
        kubectl("delete", "siloleaf", "rotor", "-n", fleet.namespace, "--ignore-not-found")


async def test_a_password_credential_of_an_older_release_becomes_an_nkey(fleet: Hub, kubectl: Kubectl) -> None:
    """The upgrade: what a release with bcrypt passwords left behind is replaced, with no manual step, by an
    NKey the hub accepts, and the password keys are gone from the Secret."""
    old = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "siloleaf-legacy-credentials", "labels": {"fleet.lattice.dev/silo": "legacy"}},
           "data": {k: base64.b64encode(v.encode()).decode() for k, v in
                    {"user": "legacy", "password": "s3cret", "bcrypt": "$2b$11$abcdefghijklmnopqrstuv",
                     "url": "nats://legacy:s3cret@hub:7422"}.items()}}
    kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-n", fleet.namespace, "-f", "-",
            input=json.dumps(old))
    leaf = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf", "metadata": {"name": "legacy"},
            "spec": {"silo": "legacy", "hub": fleet.name, "leaf": {"mode": "External"}}}
    kubectl("apply", "-n", fleet.namespace, "-f", "-", input=json.dumps(leaf))
    try:
        def migrated() -> set[str]:
            keys = set(kubectl.json("get", "secret", "siloleaf-legacy-credentials", "-n", fleet.namespace)["data"])
            return keys if keys == {"user", "nkey", "seed"} else set()

        wait_for(migrated, 60, "the password Secret replaced by an NKey")
        public = secret_value(kubectl, fleet.namespace, "siloleaf-legacy-credentials", "nkey")
        wait_for(lambda: public in _hub_conf(fleet), 60, "the hub config holds legacy's public key")
        seed = secret_value(kubectl, fleet.namespace, "siloleaf-legacy-credentials", "seed")

        async def signs_in() -> bool:
            nc = await fleet.connect(seed, inbox_prefix=b"_INBOX_legacy")
            try:
                await nc.publish("fleet.state.legacy", b'{"pods":1}')
                await nc.flush(timeout=5)
                return nc.is_connected
            finally:
                await nc.close()

        await async_wait_for(signs_in, 60, "legacy signs in to the hub with its new seed")
    finally:
        kubectl("delete", "siloleaf", "legacy", "-n", fleet.namespace, "--ignore-not-found")


def _reason(kubectl: Kubectl, kind: str, name: str, namespace: str) -> str:
    return condition(get(kubectl, kind, name, namespace), "Ready").get("reason", "")


def test_the_same_silo_on_another_hub_is_refused(fleet: Hub, kubectl: Kubectl) -> None:
    """Leaf children are named by silo alone: a second SiloLeaf of ct-fac, on any hub, must touch none of them."""
    children = {kind: kubectl.json("get", kind, name, "-n", fleet.namespace)["metadata"]["resourceVersion"]
                for kind, name in (("secret", "siloleaf-ct-fac-credentials"), ("deployment", "ct-fac-leaf"))}
    leaf = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf", "metadata": {"name": "ct-fac-again"},
            "spec": {"silo": "ct-fac", "hub": "another-hub"}}
    kubectl("apply", "-n", fleet.namespace, "-f", "-", input=json.dumps(leaf))
    try:
        wait_for(lambda: _reason(kubectl, "siloleaf", "ct-fac-again", fleet.namespace) == "DuplicateSilo", 60,
                 "the second ct-fac refused as DuplicateSilo")
        assert {kind: kubectl.json("get", kind, name, "-n", fleet.namespace)["metadata"]["resourceVersion"]
                for kind, name in (("secret", "siloleaf-ct-fac-credentials"),
                                   ("deployment", "ct-fac-leaf"))} == children
        assert is_ready(kubectl, "siloleaf", "ct-fac", fleet.namespace)
    finally:
        kubectl("delete", "siloleaf", "ct-fac-again", "-n", fleet.namespace, "--ignore-not-found")


async def test_a_second_fleetstream_of_one_stream_is_refused_and_its_delete_keeps_the_stream(
        fleet: Hub, kubectl: Kubectl) -> None:
    copy = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "FleetStream", "metadata": {"name": "events-copy"},
            "spec": {"hub": fleet.name, "name": "FLEET_EVENTS", "subjects": ["fleet.events.>"], "maxAge": "1h",
                     "deletionPolicy": "Delete"}}
    kubectl("apply", "-n", fleet.namespace, "-f", "-", input=json.dumps(copy))
    wait_for(lambda: _reason(kubectl, "fleetstream", "events-copy", fleet.namespace) == "DuplicateStream", 60,
             "the copy refused as DuplicateStream")
    kubectl("delete", "fleetstream", "events-copy", "-n", fleet.namespace, "--wait=true", "--timeout=60s")
    nc = await fleet.connect_operator()
    try:
        events = (await nc.jetstream().stream_info("FLEET_EVENTS")).config
        assert events.max_age == 7 * 86400, "the copy changed the owner's stream"
    finally:
        await nc.close()
    assert is_ready(kubectl, "fleetstream", "fleet-events", fleet.namespace)


async def test_a_deleted_silo_takes_its_agent_consumer_with_it(fleet: Hub, kubectl: Kubectl) -> None:
    leaf = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf", "metadata": {"name": "delta"},
            "spec": {"silo": "delta", "hub": fleet.name, "leaf": {"mode": "External"}}}
    kubectl("apply", "-n", fleet.namespace, "-f", "-", input=json.dumps(leaf))
    nc = await fleet.connect_operator()
    try:
        js = nc.jetstream()
        # The durable an install for delta would have made.
        await js.add_consumer("FLEET_INSTALL", ConsumerConfig(durable_name="agent-delta", ack_policy="explicit",
                                                              filter_subject="fleet.install.delta.request"))
        kubectl("delete", "siloleaf", "delta", "-n", fleet.namespace)

        async def gone() -> bool:
            try:
                await js.consumer_info("FLEET_INSTALL", "agent-delta")
            except NotFoundError:
                return True
            return False

        await async_wait_for(gone, 60, "agent-delta deleted with its silo")
    finally:
        await nc.close()


async def test_the_seeds_leaf_names_work_verbatim(fleet: Hub, kubectl: Kubectl) -> None:
    """Seed 000's mrcp-agent dials nats://nats-leaf.eose-entry.svc.cluster.local:4222: the leaf runs in the silo's
    namespace under the Service name its apps use, never taking over a Service it did not make, and goes with
    its SiloLeaf."""
    silo_ns = create_namespace(kubectl, "eose-entry")
    try:
        theirs = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nats-leaf"},
                  "spec": {"ports": [{"port": 4222}], "selector": {"app": "someone-elses"}}}
        kubectl("apply", "-n", silo_ns, "-f", "-", input=json.dumps(theirs))
        leaf = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf", "metadata": {"name": "epsilon"},
                "spec": {"silo": "epsilon", "hub": fleet.name,
                         "leaf": {"namespace": silo_ns, "serviceName": "nats-leaf"}}}
        kubectl("apply", "-n", fleet.namespace, "-f", "-", input=json.dumps(leaf))
        wait_for(lambda: condition(get(kubectl, "siloleaf", "epsilon", fleet.namespace), "Ready").get("reason")
                 == "LeafNameTaken", 60, "epsilon refused: nats-leaf is someone else's")
        kubectl("delete", "service", "nats-leaf", "-n", silo_ns)
        wait_for(lambda: get(kubectl, "siloleaf", "epsilon", fleet.namespace)["status"].get("connected"), 180,
                 "epsilon's leaf in the silo namespace connected")
        status = get(kubectl, "siloleaf", "epsilon", fleet.namespace)["status"]
        assert status["leafUrl"] == f"nats://nats-leaf.{silo_ns}.svc.cluster.local:4222"

        operator = await fleet.connect_operator()
        seed = secret_value(kubectl, silo_ns, "siloleaf-epsilon-local", "seed")
        app = await nats_connection.connect(servers=service_url(kubectl, silo_ns, "nats-leaf"), nkeys_seed_str=seed,
                                            connect_timeout=15, allow_reconnect=False)
        try:
            boot = await operator.subscribe("fleet.events.epsilon.boot")
            await operator.flush()

            async def delivered() -> bool:
                await app.publish("fleet.events.epsilon.boot", b'{"event":"boot"}')
                await app.flush()
                try:
                    await boot.next_msg(1)
                except nats.errors.TimeoutError:
                    return False
                return True

            # Interest crosses the leafnode asynchronously: publish until the hub side has it.
            await async_wait_for(delivered, 60, "an app in the silo namespace reaching the hub through nats-leaf")
        finally:
            await app.close()
            await operator.close()

        kubectl("delete", "siloleaf", "epsilon", "-n", fleet.namespace, "--timeout=60s")
        left = kubectl("get", "deployment,service,configmap,secret,networkpolicy", "-n", silo_ns,
                       "-l", "fleet.lattice.dev/silo=epsilon", "-o", "name").stdout.split()
        assert left == [], f"left behind in {silo_ns}: {left}"
    finally:
        delete_namespace(kubectl, silo_ns)
