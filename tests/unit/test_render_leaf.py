"""A silo's leaf: leaf.conf (checked by nats-server), workload manifests and the External bundle."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetlattice.api.siloleaf import ExtraPermissions, SiloLeafSpec
from fleetlattice.logic.conditions import owned_by, ownership
from fleetlattice.render.leaf import (
    SEED_ENV,
    leaf_seed_secret,
    leaf_url,
    render_leaf_bundle,
    render_leaf_conf,
    render_leaf_manifests,
)
from nats_processes import check_config
from render_fixtures import Golden, credential, local_credential, temp_paths

SPEC = SiloLeafSpec(silo="ct-fac", hub="eose-hub")
REMOTE = "nats://eose-hub-leafnodes.fleet-system.svc.cluster.local:7422"
SEED = credential("ct-fac").seed
LOCAL = local_credential("ct-fac")


def _manifests(spec: SiloLeafSpec = SPEC, hub_tls: bool = False) -> list[dict[str, Any]]:
    return render_leaf_manifests(spec, "ct-fac", REMOTE, LOCAL.public_key, hub_tls)


def _dump(manifests: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False)


@pytest.mark.parametrize("hub_tls", [False, True], ids=["plain", "tls"])
def test_conf_golden(golden: Golden, hub_tls: bool) -> None:
    golden(f"leaf-{'tls' if hub_tls else 'plain'}.conf", render_leaf_conf("ct-fac", REMOTE, LOCAL.public_key, hub_tls))


def test_conf_never_contains_the_credential() -> None:
    conf = render_leaf_conf("ct-fac", REMOTE, LOCAL.public_key, hub_tls=False)
    assert f"nkey: ${SEED_ENV}\n" in conf
    assert f'url: "{REMOTE}"\n' in conf


@pytest.mark.parametrize("hub_tls", [False, True], ids=["plain", "tls"])
def test_nats_server_accepts_the_conf(nats_server: Path, tls_dir: Path, tmp_path: Path, hub_tls: bool) -> None:
    conf = tmp_path / "leaf.conf"
    conf.write_text(render_leaf_conf("ct-fac", REMOTE, LOCAL.public_key, hub_tls, temp_paths(tmp_path, tls_dir)))
    result = check_config(nats_server, conf, env={SEED_ENV: SEED})
    assert result.returncode == 0, result.stderr


def test_nats_server_refuses_the_conf_without_the_seed(
    nats_server: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed really comes from the environment: without it the server will not start."""
    conf = tmp_path / "leaf.conf"
    monkeypatch.delenv(SEED_ENV, raising=False)
    conf.write_text(render_leaf_conf("ct-fac", REMOTE, LOCAL.public_key, False, temp_paths(tmp_path)))
    result = check_config(nats_server, conf)
    assert result.returncode != 0
    assert SEED_ENV in result.stderr


@pytest.mark.parametrize("hub_tls", [False, True], ids=["plain", "tls"])
def test_manifests_golden(golden: Golden, hub_tls: bool) -> None:
    golden(f"leaf-{'tls' if hub_tls else 'plain'}.yaml", _dump(_manifests(hub_tls=hub_tls)))


def test_deployment_takes_the_seed_from_the_secret_and_rolls_on_conf_change() -> None:
    plain = {m["kind"]: m for m in _manifests(hub_tls=False)}
    tls = {m["kind"]: m for m in _manifests(hub_tls=True)}
    container = plain["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [
        {
            "name": SEED_ENV,
            "valueFrom": {"secretKeyRef": {"name": "siloleaf-ct-fac-credentials", "key": "seed"}},
        }
    ]
    checksum = "fleet.lattice.dev/config-checksum"
    annotations = [m["Deployment"]["spec"]["template"]["metadata"]["annotations"][checksum] for m in (plain, tls)]
    assert annotations[0] != annotations[1]
    assert {m["metadata"]["namespace"] for m in plain.values()} == {"ct-fac"}


def test_bundle_golden_and_secret_holds_only_seed_and_ca(golden: Golden) -> None:
    bundle = render_leaf_bundle(SPEC, "silo-system", REMOTE, SEED, LOCAL, hub_ca="-----BEGIN CERTIFICATE-----\n")
    golden("leaf-bundle.yaml", _dump(bundle))
    secret = bundle[0]
    assert secret["kind"] == "Secret"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "seed": SEED,
        "ca.crt": "-----BEGIN CERTIFICATE-----\n",
    }
    local = bundle[1]
    assert (local["kind"], local["metadata"]["name"]) == ("Secret", "siloleaf-ct-fac-local")
    assert base64.b64decode(local["data"]["seed"]).decode() == LOCAL.seed
    assert [m["kind"] for m in bundle[2:]] == ["ConfigMap", "Deployment", "Service", "NetworkPolicy"]


def test_leaf_client_port_admits_the_local_nkey_and_only_pods_of_its_namespace() -> None:
    conf = render_leaf_conf("ct-fac", REMOTE, LOCAL.public_key, hub_tls=False)
    assert f'users: [\n    {{ nkey: "{LOCAL.public_key}" }}\n  ]' in conf
    assert LOCAL.seed not in conf
    (policy,) = [m for m in _manifests()
                 if m["kind"] == "NetworkPolicy"]
    (deployment,) = [m for m in _manifests()
                     if m["kind"] == "Deployment"]
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {}}],
                                          "ports": [{"protocol": "TCP", "port": "nats"},
                                                    {"protocol": "TCP", "port": "monitor"}]}]


def test_bundle_without_tls_has_no_ca() -> None:
    secret = render_leaf_bundle(SPEC, "silo-system", REMOTE, SEED, LOCAL, hub_ca=None)[0]
    assert set(secret["data"]) == {"seed"}


def test_changed_permissions_roll_the_leaf() -> None:
    """A hub reload does not re-scope a connected leaf (see test_render_runtime), so the leaf must restart."""

    def annotations(spec: SiloLeafSpec) -> dict[str, str]:
        (deployment,) = [m for m in _manifests(spec) if m["kind"] == "Deployment"]
        return deployment["spec"]["template"]["metadata"]["annotations"]

    wider = SPEC.model_copy(update={"permissions": ExtraPermissions(publish=["fleet.campfire.>"])})
    before, after = annotations(SPEC), annotations(wider)
    assert before["fleet.lattice.dev/config-checksum"] == after["fleet.lattice.dev/config-checksum"]
    assert before["fleet.lattice.dev/permissions-checksum"] != after["fleet.lattice.dev/permissions-checksum"]


def test_the_seeds_leaf_names_are_the_users_choice() -> None:
    """`nats://nats-leaf.eose-entry.svc.cluster.local:4222`, as seed 000's mrcp-agent dials it."""
    spec = SiloLeafSpec.model_validate({"silo": "ct-fac", "hub": "eose-hub",
                                        "leaf": {"namespace": "eose-entry", "serviceName": "nats-leaf"}})
    manifests = render_leaf_manifests(spec, "eose-entry", REMOTE, LOCAL.public_key, False)
    assert {(m["kind"], m["metadata"]["name"], m["metadata"]["namespace"]) for m in manifests} == {
        ("ConfigMap", "ct-fac-leaf-config", "eose-entry"), ("Deployment", "ct-fac-leaf", "eose-entry"),
        ("Service", "nats-leaf", "eose-entry"), ("NetworkPolicy", "ct-fac-leaf", "eose-entry")}
    assert leaf_url(spec, "eose-entry") == "nats://nats-leaf.eose-entry.svc.cluster.local:4222"
    assert leaf_url(SPEC, "fleet") == "nats://ct-fac-leaf.fleet.svc.cluster.local:4222"
    secret = leaf_seed_secret(spec, "eose-entry", SEED, {})
    assert base64.b64decode(secret["data"]["seed"]).decode() == SEED and set(secret["data"]) == {"seed"}


@pytest.mark.parametrize("field", ["namespace", "serviceName"])
def test_leaf_names_must_be_dns_labels(field: str) -> None:
    with pytest.raises(ValueError, match="should match pattern"):
        SiloLeafSpec.model_validate({"silo": "ct-fac", "hub": "eose-hub", "leaf": {field: "Eose_Entry"}})


def test_a_child_in_another_namespace_is_marked_by_annotation_not_owner_reference() -> None:
    owner = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf",
             "metadata": {"name": "ct-fac", "namespace": "fleet", "uid": "u1"}}
    assert "ownerReferences" in ownership(owner, "fleet")
    elsewhere = ownership(owner, "eose-entry")
    assert elsewhere == {"annotations": {"fleet.lattice.dev/owner": "fleet/ct-fac"}}
    assert owned_by({"metadata": elsewhere}, owner) and owned_by({"metadata": ownership(owner, "fleet")}, owner)
    assert not owned_by({"metadata": {"annotations": {"fleet.lattice.dev/owner": "other/ct-fac"}}}, owner)
    assert not owned_by({"metadata": {}}, owner)
