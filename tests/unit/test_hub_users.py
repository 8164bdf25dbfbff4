"""Which silos a hub's config admits (logic.hub_users) and where a render reads them from: kopf's index of the
SiloLeaves and the credentials already in memory. At 3,500 silos each render LISTed and validated every SiloLeaf
and LISTed every silo Secret under the hub's config lock: the hub's own resume took six minutes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.apply.credentials import MANAGED, CredentialSecrets
from fleetlattice.apply.hub import HubState
from fleetlattice.apply.leaf import LeafState
from fleetlattice.clients.hub_connections import HubConnections
from fleetlattice.logic.credentials import Credential
from fleetlattice.logic.heartbeats import SiloHeartbeats
from fleetlattice.logic.hub_users import silo_users
from fleetlattice.render.names import HubRef, SiloRef

HUB = HubRef("hub", "fleet")


def leaf(name: str, silo: str, hub: str = "hub", created: str = "2026-01-01T00:00:00Z", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf",
            "metadata": {"name": name, "namespace": "fleet", "uid": f"uid-{name}", "generation": 1,
                         "creationTimestamp": created, **meta},
            "spec": {"silo": silo, "hub": hub}}


def credentials(*silos: str) -> dict[str, dict[str, str]]:
    return {SiloRef(s).credentials_secret: Credential.generate(s).secret_data() for s in silos}


def keys(*silos: str) -> Callable[[str], str | None]:
    return {SiloRef(s).credentials_secret: Credential.generate(s).public_key for s in silos}.get


def parse(body: Any) -> SiloLeafSpec | None:
    try:
        return SiloLeafSpec.model_validate(body["spec"])
    except ValueError:
        return None


def test_each_live_leaf_of_the_hub_with_a_credential_is_a_user() -> None:
    leaves = [leaf("a", "ct-a"), leaf("b", "ct-b", hub="other"), leaf("c", "ct-c", deletionTimestamp="x"),
              leaf("d", "ct-d"), leaf("e", "Not A Silo!"), {**leaf("f", "ct-f"), "metadata": {
                  **leaf("f", "ct-f")["metadata"], "namespace": "elsewhere"}}]
    users = silo_users(HUB, leaves, keys("ct-a", "ct-b", "ct-c", "ct-f"), parse)
    assert [u.silo for u in users] == ["ct-a"]  # d: no credential yet; e: invalid spec; f: another namespace


def test_the_oldest_claimant_of_a_silo_keeps_it_whichever_hub_it_names() -> None:
    secrets = keys("ct-a")
    older_elsewhere = [leaf("new", "ct-a", created="2026-01-02T00:00:00Z"), leaf("old", "ct-a", hub="other")]
    assert silo_users(HUB, older_elsewhere, secrets, parse) == ()
    older_here = [leaf("new", "ct-a", hub="other", created="2026-01-02T00:00:00Z"), leaf("old", "ct-a")]
    assert [u.silo for u in silo_users(HUB, older_here, secrets, parse)] == ["ct-a"]


class Recording:
    """The Kube calls a hub render makes, answered from memory: nothing exists until applied."""

    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {
            ("Secret", name): {"metadata": {"name": name}, "data": data} for name, data in secrets.items()}
        self.calls: list[str] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get {kind}")
        return self.objects.get((kind, name))

    async def list(self, kind: str, namespace: str, *, labels: str | None = None) -> list[dict[str, Any]]:
        self.calls.append(f"list {kind}")
        assert kind != "Secret" or labels == MANAGED
        return [o for (k, _), o in self.objects.items() if k == kind]

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"apply {obj['kind']}")
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
        return obj

    async def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return None if (obj["kind"], obj["metadata"]["name"]) in self.objects else await self.apply(obj)


async def test_a_render_reads_silos_from_the_index_and_credentials_from_memory() -> None:
    kube = Recording(credentials("ct-a", "ct-b"))
    hubs = HubState(kube, CredentialSecrets(kube), HubConnections(kube))  # type: ignore[arg-type]  # the calls a render makes
    index = {("fleet", "a"): [leaf("a", "ct-a")], ("fleet", "b"): [leaf("b", "ct-b")]}
    body = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "FleetHub",
            "metadata": {"name": "hub", "namespace": "fleet", "uid": "hub-uid"}, "spec": {}}
    await hubs.apply(body, FleetHubSpec(), index)
    kube.objects[("FleetHub", "hub")] = body
    kube.calls.clear()
    for _ in range(3):  # a SiloLeaf's sync: the silos as they are, nothing changed
        assert await hubs.sync("fleet", "hub", index)
    assert "list SiloLeaf" not in kube.calls and "list Secret" not in kube.calls
    assert "get ConfigMap" not in kube.calls and not [c for c in kube.calls if c.startswith("apply")]
    conf = kube.objects[("ConfigMap", HUB.config_map)]["data"]
    index[("fleet", "c")] = [leaf("c", "ct-c")]  # a new SiloLeaf, and its credential made as LeafState does
    await hubs.credentials.ensure(index[("fleet", "c")][0], SiloRef("ct-c").credentials_secret, "ct-c", {})
    await hubs.sync("fleet", "hub", index)
    assert kube.objects[("ConfigMap", HUB.config_map)]["data"] != conf  # the new silo's user is in


async def test_a_new_silos_user_is_written_before_its_leaf_is_looked_at() -> None:
    """The reload a new silo waits for starts from the hub's config write: nothing of the leaf's own (the claim
    check's reads, the local credential) comes before it."""
    kube = Recording({})
    hubs = HubState(kube, CredentialSecrets(kube), HubConnections(kube))  # type: ignore[arg-type]
    hub = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "FleetHub",
           "metadata": {"name": "hub", "namespace": "fleet", "uid": "hub-uid"}, "spec": {}}
    await hubs.apply(hub, FleetHubSpec(), {})
    kube.objects[("FleetHub", "hub")] = hub
    leaves = LeafState(kube, hubs, SiloHeartbeats(), hubs.credentials)  # type: ignore[arg-type]
    body = leaf("a", "ct-a")
    kube.calls.clear()
    await leaves.apply(body, SiloLeafSpec.model_validate(body["spec"]), "a", FleetHubSpec(), {("fleet", "a"): [body]})
    conf_written = kube.calls.index("apply ConfigMap")
    assert kube.calls[:conf_written].count("apply Secret") == 1  # the silo's credential, not yet the local one
    assert "get Deployment" not in kube.calls[:conf_written]


async def test_a_render_derives_each_public_key_once_per_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deriving a public key from its seed cost 50 ms per render of 1,000 silos, under the hub's config lock; a
    rotated credential (a new seed) still gets its new key into the config."""
    kube = Recording(credentials("ct-a", "ct-b"))
    hubs = HubState(kube, CredentialSecrets(kube), HubConnections(kube))  # type: ignore[arg-type]  # the calls a render makes
    index = {("fleet", "a"): [leaf("a", "ct-a")], ("fleet", "b"): [leaf("b", "ct-b")]}
    body = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "FleetHub",
            "metadata": {"name": "hub", "namespace": "fleet", "uid": "hub-uid"}, "spec": {}}
    kube.objects[("FleetHub", "hub")] = body
    await hubs.apply(body, FleetHubSpec(), index)
    derived: list[str] = []
    from_secret = Credential.from_secret

    def counted(data: dict[str, str], prefix: str = "") -> Credential | None:
        derived.append(prefix)
        return from_secret(data, prefix)

    monkeypatch.setattr(Credential, "from_secret", counted)
    await hubs.sync("fleet", "hub", index)
    assert [p for p in derived if not p] == [], "a silo's unchanged seed was derived again"
    secret = SiloRef("ct-a").credentials_secret
    del kube.objects[("Secret", secret)]
    hubs.credentials.forget("fleet", secret)
    rotated = await hubs.credentials.ensure(index[("fleet", "a")][0], secret, "ct-a", {})
    await hubs.sync("fleet", "hub", index)
    assert rotated.public_key in "".join(
        o["data"][k] for (kind, _), o in kube.objects.items() if kind == "ConfigMap" for k in o["data"])
