"""Routing agent reports to installs: the subject's silo must own the requestId."""

import json

from fleetlattice.logic.report_routing import IndexedInstall, InstallKey, route

UID = "0b7e2a4c-1111-2222-3333-444455556666"
CT = IndexedInstall(InstallKey("fleet", "ct-fac-v622"), "ct-fac", "InProgress", "2026-11-21T12:00:00Z")
OLD = IndexedInstall(InstallKey("fleet", "ct-fac-v621"), "ct-fac", "Succeeded", "2026-11-20T12:00:00Z")
BY_UID = {UID: [CT]}
BY_SILO = {("fleet", "ct-fac"): [CT, OLD]}


def r(subject: str, payload: object, namespace: str = "fleet"):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return route(subject, data, namespace, BY_UID, BY_SILO)


def test_request_id_routes_to_its_install() -> None:
    routed = r("fleet.install.ct-fac.done", {"requestId": f"{UID}-g1-a1", "pods": 6})
    assert (routed.install, routed.kind, routed.outcome) == (CT.key, "done", "")


def test_another_silo_cannot_complete_the_install() -> None:
    routed = r("fleet.install.msclo.done", {"requestId": f"{UID}-g1-a1", "pods": 6})
    assert (routed.install, routed.outcome) == (None, "unknown-request")


def test_seed_message_goes_to_the_active_install() -> None:
    assert r("fleet.install.ct-fac.done", {"pods": 6, "health": "ok"}).install == CT.key


def test_unknown_request_and_no_active_install() -> None:
    assert r("fleet.install.ct-fac.done", {"requestId": "ffffffff-0000-0000-0000-000000000000-g1-a1"}).outcome \
        == "unknown-request"
    assert r("fleet.install.forge.progress", {"step": "x"}).outcome == "unknown-request"
    assert r("fleet.install.ct-fac.done", {"pods": 1}, namespace="other").outcome == "unknown-request"


def test_garbage_is_ignored_not_raised() -> None:
    assert r("fleet.install.ct-fac.done", b"\xff\xfe not json").outcome == "ignored-invalid"
    assert r("fleet.install.ct-fac.done", [1, 2]).outcome == "ignored-invalid"
    assert r("fleet.install.ct-fac.done", b"x" * 70_000).outcome == "ignored-invalid"
    assert r("fleet.install.ct-fac.request", {}).outcome == "ignored-invalid"
    assert r("fleet.install.ct-fac.done", {"requestId": 7}).outcome == "ignored-invalid"
