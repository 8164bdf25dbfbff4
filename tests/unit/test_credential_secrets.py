"""CredentialSecrets' reads: one LIST per namespace and its own writes on the change path, a LIST at most
LISTING_MAX_AGE old on the resync path (the rotation by deleting a Secret), never a read per Secret. Against an
in-memory stand-in of the Kube client's calls, which records them: what is asserted is the calls the operator
makes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleetlattice.apply.credentials import MANAGED, CredentialSecrets
from fleetlattice.clients.kube import Kube


class SecretsOnly:
    """Secrets by (namespace, name), and every call made."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get {name}")
        return self.secrets.get((namespace, name))

    async def list(self, kind: str, namespace: str, *, labels: str | None = None) -> list[dict[str, Any]]:
        assert labels == MANAGED
        self.calls.append(f"list {namespace}")
        return [s for (ns, _), s in self.secrets.items() if ns == namespace]

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"apply {obj['metadata']['name']}")
        self.secrets[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return obj

    async def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        self.calls.append(f"create {obj['metadata']['name']}")
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self.secrets:
            return None
        self.secrets[key] = obj
        return obj


OWNER = {"metadata": {"name": "ct-fac", "namespace": "fleet", "uid": "u1"}, "apiVersion": "v1", "kind": "X"}


def secrets() -> tuple[SecretsOnly, CredentialSecrets]:
    kube = SecretsOnly()
    return kube, CredentialSecrets(kube)  # type: ignore[arg-type]  # the calls CredentialSecrets makes


async def test_a_cold_start_lists_once_and_reads_no_secret_one_by_one() -> None:
    kube, creds = secrets()
    for i in range(50):
        await creds.ensure(OWNER, f"siloleaf-s{i}-credentials", f"s{i}", {})
    assert kube.calls == ["list fleet", *(f"create siloleaf-s{i}-credentials" for i in range(50))]


async def test_a_secret_made_since_the_list_is_kept_not_overwritten() -> None:
    kube, creds = secrets()
    await creds.ensure(OWNER, "siloleaf-other-credentials", "other", {})  # the namespace is listed now
    mine = await CredentialSecrets(kube).ensure(OWNER, "siloleaf-ct-fac-credentials", "ct-fac", {})  # made since
    assert (await creds.ensure(OWNER, "siloleaf-ct-fac-credentials", "ct-fac", {})) == mine
    assert kube.calls[-2:] == ["create siloleaf-ct-fac-credentials", "get siloleaf-ct-fac-credentials"]


async def test_an_existing_secret_is_kept_without_a_write() -> None:
    kube, creds = secrets()
    first = await creds.ensure(OWNER, "siloleaf-ct-fac-credentials", "ct-fac", {})
    restarted = CredentialSecrets(kube)  # type: ignore[arg-type]
    kube.calls.clear()
    assert (await restarted.ensure(OWNER, "siloleaf-ct-fac-credentials", "ct-fac", {})) == first
    assert kube.calls == ["list fleet"]


async def test_a_resync_reads_afresh_so_a_deleted_secret_rotates(monkeypatch: pytest.MonkeyPatch) -> None:
    kube, creds = secrets()
    first = await creds.ensure(OWNER, "siloleaf-ct-fac-credentials", "ct-fac", {})
    del kube.secrets[("fleet", "siloleaf-ct-fac-credentials")]
    assert (await creds.ensure(OWNER, "siloleaf-ct-fac-credentials", "ct-fac", {})) == first  # memory, no read
    monkeypatch.setattr("fleetlattice.apply.credentials.LISTING_MAX_AGE", 0.0)
    rotated = await creds.ensure(OWNER, "siloleaf-ct-fac-credentials", "ct-fac", {}, reread=True)
    assert rotated.public_key != first.public_key
    assert ("fleet", "siloleaf-ct-fac-credentials") in kube.secrets


async def test_resyncs_of_a_namespace_share_one_recent_list() -> None:
    """A thousand SiloLeaves resyncing every 30 s read their two Secrets each by GET: 11 requests per silo of a
    cold start. Now every resync within LISTING_MAX_AGE of the namespace's LIST reads from it."""
    kube, creds = secrets()
    for i in range(50):
        await creds.ensure(OWNER, f"siloleaf-s{i}-credentials", f"s{i}", {})
    kube.calls.clear()
    for i in range(50):
        await creds.ensure(OWNER, f"siloleaf-s{i}-credentials", f"s{i}", {}, reread=True)
    assert kube.calls == []


async def test_a_write_while_the_namespace_is_listed_again_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """A LIST that started before this process made a Secret does not show it; its answer must not make the
    Secret look absent (a second credential would rotate the first)."""
    kube, creds = secrets()
    await creds.ensure(OWNER, "siloleaf-other-credentials", "other", {})
    listed, created = asyncio.Event(), asyncio.Event()
    list_, create = kube.list, kube.create

    async def slow_list(kind: str, namespace: str, *, labels: str | None = None) -> list[dict[str, Any]]:
        items = await list_(kind, namespace, labels=labels)
        await listed.wait()
        return items

    async def slow_create(obj: dict[str, Any]) -> dict[str, Any] | None:
        await created.wait()
        return await create(obj)

    kube.list, kube.create = slow_list, slow_create  # type: ignore[method-assign]
    making = asyncio.ensure_future(creds.ensure(OWNER, "siloleaf-ct-fac-credentials", "ct-fac", {}))
    await asyncio.sleep(0.01)  # read the namespace as listed before, now creating
    monkeypatch.setattr("fleetlattice.apply.credentials.LISTING_MAX_AGE", 0.0)
    resync = asyncio.ensure_future(creds.ensure(OWNER, "siloleaf-other-credentials", "other", {}, reread=True))
    await asyncio.sleep(0.01)  # the new LIST has its items, without ct-fac's Secret
    created.set()
    mine = await asyncio.wait_for(making, 5)
    listed.set()
    await asyncio.wait_for(resync, 5)
    kube.calls.clear()
    monkeypatch.setattr("fleetlattice.apply.credentials.LISTING_MAX_AGE", 3600.0)
    assert (await creds.ensure(OWNER, "siloleaf-ct-fac-credentials", "ct-fac", {}, reread=True)) == mine
    assert kube.calls == []


def test_the_stand_in_has_the_signatures_of_the_real_client() -> None:
    import inspect

    for call in ("get", "list", "apply", "create"):
        assert inspect.signature(getattr(SecretsOnly, call)).parameters.keys() == \
            inspect.signature(getattr(Kube, call)).parameters.keys()
