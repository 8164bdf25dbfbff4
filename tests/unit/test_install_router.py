"""Routing agent reports to installs: the subject's silo must own the requestId."""

import json

import pytest

from fleetlattice.api.messages import AcceptedRequest
from fleetlattice.logic.report_routing import IndexedInstall, InstallKey, by_hand_install, route

UID = "0b7e2a4c-1111-2222-3333-444455556666"
CT = IndexedInstall(InstallKey("fleet", "ct-fac-v622"), "ct-fac", "InProgress", "2026-11-21T12:00:00Z")
OLD = IndexedInstall(InstallKey("fleet", "ct-fac-v621"), "ct-fac", "Succeeded", "2026-11-20T12:00:00Z")
BY_UID = {UID: [CT]}
BY_SILO = {("fleet", "ct-fac"): [CT, OLD]}
BY_HAND = IndexedInstall(InstallKey("fleet", "ct-fac-bus-41"), "ct-fac", "InProgress", "2026-11-21T13:00:00Z")
BY_REQUEST = {"bus-41": [BY_HAND]}


def r(subject: str, payload: object, namespace: str = "fleet"):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return route(subject, data, namespace, BY_UID, BY_SILO, BY_REQUEST)


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


def test_a_request_published_by_hand_routes_by_its_bus_request_id_and_only_for_its_silo() -> None:
    assert r("fleet.install.ct-fac.done", {"requestId": "bus-41", "pods": 6}).install == BY_HAND.key
    assert r("fleet.install.msclo.done", {"requestId": "bus-41"}).outcome == "unknown-request"


def test_the_accepted_report_of_an_unrecorded_request_by_hand_asks_for_its_siloinstall() -> None:
    accepted = {"requestId": "bus-42", "step": "accepted", "request": {"version": "v622", "params": {}}}
    routed = r("fleet.install.ct-fac.progress", accepted)
    assert (routed.install, routed.outcome) == (None, "adopt")
    # Only the accepted report (which says what was asked) records one; a bare done cannot.
    assert r("fleet.install.ct-fac.done", {"requestId": "bus-42"}).outcome == "unknown-request"


def test_the_siloinstall_of_a_request_by_hand_is_marked_and_bounded() -> None:
    manifest = by_hand_install("fleet", "ct-fac", "bus-42",
                               AcceptedRequest(version="v622", params={"ns": "eose-entry"}))
    assert manifest["metadata"]["name"] == "ct-fac-bus-42"
    assert manifest["metadata"]["labels"]["fleet.lattice.dev/origin"] == "bus"
    assert manifest["metadata"]["annotations"] == {"fleet.lattice.dev/request-id": "bus-42"}
    assert manifest["spec"] == {"silo": "ct-fac", "version": "v622", "params": {"ns": "eose-entry"}}
    with pytest.raises(ValueError, match="version"):
        by_hand_install("fleet", "ct-fac", "bus-43", AcceptedRequest(version="v 622"))


def test_garbage_is_ignored_not_raised() -> None:
    assert r("fleet.install.ct-fac.done", b"\xff\xfe not json").outcome == "ignored-invalid"
    assert r("fleet.install.ct-fac.done", [1, 2]).outcome == "ignored-invalid"
    assert r("fleet.install.ct-fac.done", b"x" * 70_000).outcome == "ignored-invalid"
    assert r("fleet.install.ct-fac.request", {}).outcome == "ignored-invalid"
    assert r("fleet.install.ct-fac.done", {"requestId": 7}).outcome == "ignored-invalid"
