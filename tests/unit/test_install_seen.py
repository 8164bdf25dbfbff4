"""SiloInstall's watch-event handler (handlers.install.install_seen): a spec with no attempt stored yet is
published at once; the watch events of status writes cost nothing. It replaced kopf's create/update handlers,
whose annotation of the handled spec was one more API write per install (the hub's ticker retries what is due)."""

from __future__ import annotations

from typing import Any

from fleetlattice.handlers import install as install_handlers
from fleetlattice.logic.conditions import NotReady
from fleetlattice.logic.install_state import awaits_attempt


class Installs:
    def __init__(self) -> None:
        self.advanced: list[tuple[str, str]] = []
        self.held: list[str] = []

    async def advance(self, namespace: str, name: str, hub: str, seen: dict[str, Any]) -> None:
        self.advanced.append((name, hub))

    async def hold(self, namespace: str, name: str, reason: NotReady, seen: dict[str, Any]) -> None:
        self.held.append(reason.reason)


class Store:
    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append(name)


class Runtime:
    def __init__(self) -> None:
        self.installs, self.store = Installs(), Store()


def install(generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "fac-v1", "namespace": "fleet", "generation": generation},
            "spec": {"silo": "ct-fac", "version": "v1"}, "status": status}


async def seen(rt: Runtime, body: dict[str, Any], type: str = "MODIFIED", silo_hub: str | None = "eose-hub") -> None:
    hubs = {("fleet", "ct-fac"): [silo_hub]} if silo_hub else {}
    await install_handlers.install_seen(type=type, body=body, namespace="fleet", name="fac-v1",  # type: ignore[arg-type]
                                        memo={"runtime": rt}, hub_by_silo=hubs)


def test_an_attempt_is_awaited_until_one_of_the_current_generation_is_stored() -> None:
    assert awaits_attempt(install())
    assert not awaits_attempt(install(observedGeneration=1, requestId="r-g1-a1"))
    assert awaits_attempt(install(generation=2, observedGeneration=1, requestId="r-g1-a1"))


async def test_a_new_spec_is_published_and_status_events_cost_nothing() -> None:
    rt = Runtime()
    await seen(rt, install(), type="ADDED")
    await seen(rt, install(observedGeneration=1, requestId="r-g1-a1"))  # the watch brings our own write back
    await seen(rt, install(generation=2, observedGeneration=1, requestId="r-g1-a1"))
    assert rt.installs.advanced == [("fac-v1", "eose-hub"), ("fac-v1", "eose-hub")]


async def test_an_install_of_an_unknown_silo_says_so_and_a_deleted_one_is_forgotten() -> None:
    rt = Runtime()
    await seen(rt, install(), silo_hub=None)
    assert (rt.installs.advanced, rt.installs.held) == ([], ["SiloUnknown"])
    await seen(rt, install(), type="DELETED")
    assert rt.store.forgotten == ["fac-v1"]
