"""The hub's nats.conf: golden output, accepted by the real nats-server, and the restart hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlattice.api.siloleaf import ExtraPermissions
from fleetlattice.render.hub_conf import HubUsers, SiloUser, render_hub_conf, restart_hash
from nats_processes import check_config
from render_fixtures import HUB, Golden, hub_spec, hub_users, temp_paths


def test_single_server_golden(golden: Golden) -> None:
    extra = {"msclo": ExtraPermissions(publish=["fleet.mdsms.msclo.ingest"], subscribe=["fleet.campfire.>"])}
    golden("hub-1-replica.conf", render_hub_conf(HUB, hub_spec(), hub_users("msclo", "ct-fac", extra=extra)))


def test_cluster_with_tls_golden(golden: Golden) -> None:
    golden("hub-3-replicas-tls.conf", render_hub_conf(HUB, hub_spec(replicas=3, tls=True), hub_users("ct-fac")))


def test_silos_are_sorted_whatever_the_input_order() -> None:
    spec = hub_spec()
    assert render_hub_conf(HUB, spec, hub_users("msclo", "ct-fac", "forge")) == render_hub_conf(
        HUB, spec, hub_users("forge", "ct-fac", "msclo")
    )


def test_duplicate_silo_users_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicated: ct-fac"):
        HubUsers(("op", "UOP"), ("sys", "USYS"), (SiloUser("ct-fac", "UA"), SiloUser("ct-fac", "UB")))


def test_sizes_are_rendered_in_bytes() -> None:
    conf = render_hub_conf(HUB, hub_spec(limits={"maxPayload": "2Mi"}, jetstream={"maxFileStore": "1G"}), hub_users())
    assert "max_payload: 2097152\n" in conf
    assert "max_file_store: 1000000000\n" in conf


def test_strings_are_quoted_so_they_cannot_escape_the_value() -> None:
    hostile = SiloUser("ct-fac", 'x" } evil: { "', ExtraPermissions())
    conf = render_hub_conf(HUB, hub_spec(), HubUsers(("op", "UOP"), ("sys", "USYS"), (hostile,)))
    assert 'nkey: "x\\" } evil: { \\""' in conf


@pytest.mark.parametrize("replicas", [1, 3])
@pytest.mark.parametrize("silos", [0, 1, 200])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_nats_server_accepts_the_config(
    nats_server: Path, tls_dir: Path, tmp_path: Path, replicas: int, silos: int, tls: bool
) -> None:
    users = hub_users(*(f"silo-{i:03d}" for i in range(silos)))
    conf = tmp_path / "nats.conf"
    conf.write_text(render_hub_conf(HUB, hub_spec(replicas, tls), users, temp_paths(tmp_path, tls_dir)))
    result = check_config(nats_server, conf, env={"POD_NAME": "eose-hub-0"})
    assert result.returncode == 0, result.stderr


# Settings a reload cannot change must roll the pods; everything else must not.
@pytest.mark.parametrize(
    "change",
    [
        {"image": "nats:2.15.2"},
        {"replicas": 3},
        {"ports": {"client": 4223}},
        {"ports": {"cluster": 6223}},
        {"ports": {"leafnodes": 7423}},
        {"ports": {"monitoring": 8223}},
        {"jetstream": {"maxMemoryStore": "1Gi"}},
        {"jetstream": {"maxFileStore": "10Gi"}},
        {"limits": {"maxSubscriptions": 100}},
        {"tls": {"enabled": True, "secretName": "eose-hub-tls"}},
    ],
)
def test_restart_hash_changes_with_restart_only_settings(change: dict) -> None:
    assert restart_hash(HUB, hub_spec(**change)) != restart_hash(HUB, hub_spec())


@pytest.mark.parametrize(
    "change",
    [
        {"limits": {"maxPayload": "8Mi"}},
        {"limits": {"maxConnections": 100}},
        {"reloaderImage": "natsio/nats-server-config-reloader:0.23.0"},
        {"leafnodes": {"serviceType": "LoadBalancer", "advertise": "hub.example.com:7422"}},
        {"resources": {"limits": {"memory": "2Gi"}}},
    ],
)
def test_restart_hash_ignores_reloadable_settings(change: dict) -> None:
    assert restart_hash(HUB, hub_spec(**change)) == restart_hash(HUB, hub_spec())
