"""Silo-scoped permissions: each silo reaches only its own subjects."""

from __future__ import annotations

import pytest

from fleetlattice.api.bus import agent_durable, inbox_prefix
from fleetlattice.api.siloleaf import MAX_STATE_ASPECTS, ExtraPermissions
from fleetlattice.render.permissions import silo_permissions

SILOS = ("ct-fac", "msclo", "forge")


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: '*' is one token, a trailing '>' one or more."""
    pattern_tokens, subject_tokens = pattern.split("."), subject.split(".")
    for i, token in enumerate(pattern_tokens):
        if token == ">":
            return len(subject_tokens) > i
        if i >= len(subject_tokens) or token not in ("*", subject_tokens[i]):
            return False
    return len(pattern_tokens) == len(subject_tokens)


def allowed(silo: str, direction: str, subject: str) -> bool:
    return any(matches(p, subject) for p in silo_permissions(silo)[direction]["allow"])


@pytest.mark.parametrize("silo", SILOS)
def test_own_subjects_are_allowed(silo: str) -> None:
    for subject in (
        f"fleet.install.{silo}.progress",
        f"fleet.install.{silo}.done",
        f"fleet.install.{silo}.failed",
        f"fleet.install.{silo}.scrubbed",
        f"fleet.events.{silo}.boot",
        f"fleet.events.{silo}.pod.ready",
        f"fleet.state.{silo}",
        f"fleet.state.{silo}.gpu",
        f"fleet.{silo}.scan.request",
        f"fleet.{silo}.audit.finding",
        f"$JS.fleet.API.CONSUMER.MSG.NEXT.FLEET_INSTALL.{agent_durable(silo)}",
        f"$JS.ACK.FLEET_INSTALL.{agent_durable(silo)}.1.2.3.4.5",
    ):
        assert allowed(silo, "publish", subject), subject
    for subject in (
        f"fleet.install.{silo}.request",
        f"fleet.install.{silo}.scrub",
        f"fleet.{silo}.scan.result",
        f"{inbox_prefix(silo)}.abc.1",
    ):
        assert allowed(silo, "subscribe", subject), subject


@pytest.mark.parametrize(("silo", "other"), [(s, o) for s in SILOS for o in SILOS if s != o])
def test_other_silos_subjects_are_denied(silo: str, other: str) -> None:
    for subject in (
        f"fleet.install.{other}.done",
        f"fleet.install.{other}.progress",
        f"fleet.events.{other}.boot",
        f"fleet.state.{other}",
        f"$KV.FLEET_STATE.{other}",
        f"$JS.fleet.API.CONSUMER.MSG.NEXT.FLEET_INSTALL.{agent_durable(other)}",
        f"$JS.ACK.FLEET_INSTALL.{agent_durable(other)}.1.2.3.4.5",
        f"fleet.install.{silo}.request",  # a silo never fakes its own requests either
    ):
        assert not allowed(silo, "publish", subject), subject
    for subject in (f"fleet.install.{other}.request", f"fleet.install.{other}.scrub", f"{inbox_prefix(other)}.x"):
        assert not allowed(silo, "subscribe", subject), subject


# The one subject without the silo's name: the shared bucket's info (its config and counts, no values), which
# `nats kv get` and nats-py's key_value() read before a get.
STATE_INFO = {f"{api}.STREAM.INFO.KV_FLEET_STATE" for api in ("$JS.fleet.API", "$JS.API")}


def test_nothing_outside_the_allow_lists_and_no_broad_wildcards() -> None:
    perms = silo_permissions("ct-fac")
    for direction in ("publish", "subscribe"):
        assert set(perms[direction]) == {"allow"}
        for pattern in perms[direction]["allow"]:
            assert "ct-fac" in pattern or pattern in STATE_INFO, pattern
    assert not allowed("ct-fac", "publish", "$JS.API.STREAM.DELETE.FLEET_INSTALL")
    assert not allowed("ct-fac", "subscribe", "_INBOX.abc")


@pytest.mark.parametrize("api", ["$JS.fleet.API", "$JS.API"])
def test_a_silo_reads_its_own_state_keys_only(api: str) -> None:
    get = f"{api}.DIRECT.GET.KV_FLEET_STATE.$KV.FLEET_STATE"
    assert allowed("ct-fac", "publish", f"{get}.ct-fac")
    assert allowed("ct-fac", "publish", f"{get}.ct-fac.gpu")
    assert not allowed("ct-fac", "publish", f"{get}.msclo")
    assert not allowed("ct-fac", "publish", f"{api}.DIRECT.GET.KV_FLEET_STATE")  # body-addressed: any key
    assert not allowed("ct-fac", "publish", f"{api}.STREAM.MSG.GET.KV_FLEET_STATE")


def test_extras_are_appended_once() -> None:
    extra = ExtraPermissions(
        publish=["fleet.mdsms.ct-fac.ingest", "fleet.events.ct-fac.>"], subscribe=["fleet.campfire.>"]
    )
    perms = silo_permissions("ct-fac", extra)
    assert perms["publish"]["allow"][-1] == "fleet.mdsms.ct-fac.ingest"
    assert perms["publish"]["allow"].count("fleet.events.ct-fac.>") == 1
    assert perms["subscribe"]["allow"][-1] == "fleet.campfire.>"
    assert silo_permissions("ct-fac") == silo_permissions("ct-fac", ExtraPermissions())


def test_a_silo_writes_only_its_own_key_its_agents_and_its_declared_aspects() -> None:
    """No wildcard under the silo's state: its footprint in FLEET_STATE is a count of keys (README, Footprint)."""
    assert allowed("ct-fac", "publish", "fleet.state.ct-fac.agent")
    for subject in ("fleet.state.ct-fac.disk", "$KV.FLEET_STATE.ct-fac.disk", "fleet.state.ct-fac.gpu.x",
                    "$KV.FLEET_STATE.ct-fac.gpu.x"):
        assert not allowed("ct-fac", "publish", subject), subject
    perms = silo_permissions("ct-fac", ExtraPermissions(state_aspects=["disk"]))["publish"]["allow"]
    assert {"fleet.state.ct-fac.disk", "$KV.FLEET_STATE.ct-fac.disk"} <= set(perms)
    assert "fleet.state.ct-fac.gpu" not in perms  # declaring aspects replaces the default ones
    writes = [p for p in perms if p.startswith(("fleet.state.", "$KV.FLEET_STATE."))]
    assert not [p for p in writes if "*" in p or ">" in p]
    assert sorted(writes) == sorted(f"{prefix}.ct-fac{key}" for prefix in ("fleet.state", "$KV.FLEET_STATE")
                                    for key in ("", ".disk", ".agent"))


def test_the_most_state_keys_a_silo_may_write_is_bounded() -> None:
    aspects = [f"a{i}" for i in range(MAX_STATE_ASPECTS)]
    writes = {p for p in silo_permissions("ct-fac", ExtraPermissions(state_aspects=aspects))["publish"]["allow"]
              if p.startswith("fleet.state.")}
    assert len(writes) == MAX_STATE_ASPECTS + 2  # its own key and the agent's
    with pytest.raises(ValueError, match="at most 8"):
        ExtraPermissions(state_aspects=[*aspects, "one-more"])
