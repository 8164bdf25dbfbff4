"""The hub's nats.conf: golden output, accepted by the real nats-server, and the restart hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlattice.api.siloleaf import ExtraPermissions
from fleetlattice.render.hub_conf import (
    CONFIG_PART_LIMIT,
    HubConfTooLarge,
    HubUsers,
    SiloUser,
    render_hub_conf,
    restart_hash,
)
from nats_processes import check_config
from render_fixtures import HUB, Golden, hub_spec, hub_users, temp_paths


def test_single_server_golden(golden: Golden) -> None:
    extra = {"msclo": ExtraPermissions(publish=["fleet.mdsms.msclo.ingest"], subscribe=["fleet.campfire.>"])}
    golden("hub-1-replica.conf", render_hub_conf(HUB, hub_spec(), hub_users("msclo", "ct-fac", extra=extra)).text)


def test_cluster_with_tls_golden(golden: Golden) -> None:
    golden("hub-3-replicas-tls.conf", render_hub_conf(HUB, hub_spec(replicas=3, tls=True), hub_users("ct-fac")).text)


def test_silos_are_sorted_whatever_the_input_order() -> None:
    spec = hub_spec()
    assert render_hub_conf(HUB, spec, hub_users("msclo", "ct-fac", "forge")) == render_hub_conf(
        HUB, spec, hub_users("forge", "ct-fac", "msclo")
    )


def test_duplicate_silo_users_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicated: ct-fac"):
        HubUsers(("op", "UOP"), ("sys", "USYS"), (SiloUser("ct-fac", "UA"), SiloUser("ct-fac", "UB")))


def test_sizes_are_rendered_in_bytes() -> None:
    conf = render_hub_conf(HUB, hub_spec(limits={"maxPayload": "2Mi"}, jetstream={"maxFileStore": "1G"}),
                           hub_users()).main
    assert "max_payload: 2097152\n" in conf
    assert "max_file_store: 1000000000\n" in conf


def test_strings_are_quoted_so_they_cannot_escape_the_value() -> None:
    hostile = SiloUser("ct-fac", 'x" } evil: { "', ExtraPermissions())
    conf = render_hub_conf(HUB, hub_spec(), HubUsers(("op", "UOP"), ("sys", "USYS"), (hostile,))).text
    assert 'nkey: "x\\" } evil: { \\""' in conf


@pytest.mark.parametrize("replicas", [1, 3])
@pytest.mark.parametrize("silos", [0, 1, 200])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_nats_server_accepts_the_config(
    nats_server: Path, tls_dir: Path, tmp_path: Path, replicas: int, silos: int, tls: bool
) -> None:
    users = hub_users(*(f"silo-{i:03d}" for i in range(silos)))
    conf = render_hub_conf(HUB, hub_spec(replicas, tls), users, temp_paths(tmp_path, tls_dir)).write(tmp_path)
    result = check_config(nats_server, conf, env={"POD_NAME": "eose-hub-0"})
    assert result.returncode == 0, result.stderr


def test_a_fleet_of_thousands_fits_the_configmaps_and_the_server_takes_it(nats_server: Path, tmp_path: Path) -> None:
    """One ConfigMap holds 1 MiB; a thousand silos' users alone are 1.5 MB, so they are split into parts."""
    silos = [f"silo-{i:04d}" for i in range(3500)]
    conf = render_hub_conf(HUB, hub_spec(), hub_users(*silos), temp_paths(tmp_path))
    assert len(conf.text.encode()) > 2 * CONFIG_PART_LIMIT
    assert max(len(part.encode()) for part in (conf.main, *conf.parts)) <= CONFIG_PART_LIMIT
    assert all(f'silo "{silo}"' in conf.text for silo in silos)
    Path(temp_paths(tmp_path).config_dir).mkdir()
    result = check_config(nats_server, conf.write(Path(temp_paths(tmp_path).config_dir)),
                          env={"POD_NAME": "eose-hub-0"})
    assert result.returncode == 0, result.stderr


def test_a_new_silo_rewrites_one_part_and_nats_conf() -> None:
    before = render_hub_conf(HUB, hub_spec(), hub_users(*(f"silo-{i:03d}" for i in range(100))))
    after = render_hub_conf(HUB, hub_spec(), hub_users(*(f"silo-{i:03d}" for i in range(101))))
    assert sum(a != b for a, b in zip(before.parts, after.parts, strict=True)) == 1
    assert before.main != after.main  # it carries the parts' hash: the reloader watches it alone


def test_users_beyond_the_configmaps_are_refused_with_the_reason() -> None:
    with pytest.raises(HubConfTooLarge, match="need more than 8 ConfigMaps of 1 MiB"):
        render_hub_conf(HUB, hub_spec(), hub_users(*(f"silo-{i:05d}" for i in range(7000))))


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
