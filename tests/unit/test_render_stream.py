"""FleetStream -> JetStream configs: golden JSON, the KV mapping, and diffs checked against a real server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats.js.api import RetentionPolicy, StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import APIError

from fleetlattice.api.bus import DEFAULT_STATE_ASPECTS
from fleetlattice.api.fleetstream import FleetStreamSpec
from fleetlattice.api.siloleaf import MAX_STATE_ASPECTS
from fleetlattice.render.stream import (
    config_dict,
    immutable_changes,
    render_consumer_configs,
    render_stream_config,
    stream_config_diff,
)
from render_fixtures import Golden, hub_users, running_hub

SPECS: dict[str, dict[str, Any]] = {
    "events": {"name": "FLEET_EVENTS", "subjects": ["fleet.events.>"], "maxAge": "7d", "maxBytes": "1Gi"},
    "install": {
        "name": "FLEET_INSTALL",
        "subjects": ["fleet.install.>"],
        "retention": "WorkQueue",
        "duplicateWindow": "10m",
        "consumers": [
            {"name": "agent-ct-fac", "filterSubjects": ["fleet.install.ct-fac.request"], "maxDeliver": 5},
            {"name": "operator", "filterSubjects": ["fleet.install.*.done", "fleet.install.*.failed"], "ackWait": "1m"},
        ],
    },
    "mdsms": {"name": "FLEET_MDSMS", "subjects": ["fleet.mdsms.>"], "retention": "Interest", "maxAge": "24h"},
    "lean": {
        "name": "FLEET_LEAN",
        "subjects": ["fleet.lean.>"],
        "maxAge": "30d",
        "maxMsgs": 100000,
        "maxMsgsPerSubject": 10,
        "maxMsgSize": "64Ki",
        "storage": "Memory",
        "discard": "New",
        "description": "proof steps",
    },
    "state-kv": {"kind": "KeyValue", "name": "FLEET_STATE", "subjects": ["fleet.state.>"], "history": 5},
    "ttl-kv": {"kind": "KeyValue", "name": "SESSIONS", "ttl": "30s", "maxBytes": "10Mi"},
}


def spec(key: str, **changes: Any) -> FleetStreamSpec:
    return FleetStreamSpec.model_validate({"hub": "eose-hub", **SPECS[key], **changes})


@pytest.mark.parametrize("key", list(SPECS))
def test_golden(golden: Golden, key: str) -> None:
    rendered = {
        "stream": config_dict(render_stream_config(spec(key))),
        "consumers": [config_dict(c) for c in render_consumer_configs(spec(key))],
    }
    golden(f"stream-{key}.json", json.dumps(rendered, indent=2, sort_keys=True) + "\n")


def test_units_and_unset_limits() -> None:
    events = render_stream_config(spec("events"))
    assert (events.max_age, events.max_bytes, events.max_msgs, events.max_msg_size) == (7 * 86400, 2**30, -1, -1)
    assert events.duplicate_window == 0  # unset: the server's default (2m) applies


def test_key_value_mirrors_nats_py() -> None:
    kv = render_stream_config(spec("state-kv"))
    assert kv.name == "KV_FLEET_STATE"
    assert kv.subjects == ["$KV.FLEET_STATE.>", "fleet.state.>"]
    assert (kv.subject_transform.src, kv.subject_transform.dest) == ("fleet.state.>", "$KV.FLEET_STATE.>")
    assert (kv.max_msgs_per_subject, kv.duplicate_window, kv.max_age) == (5, 120.0, 0.0)
    assert (kv.allow_rollup_hdrs, kv.deny_delete, kv.allow_direct, kv.allow_msg_ttl) == (True, True, True, True)
    ttl = render_stream_config(spec("ttl-kv"))
    assert (ttl.max_age, ttl.duplicate_window, ttl.subject_transform) == (30.0, 30.0, None)


def test_key_value_single_wildcard_transform() -> None:
    kv = render_stream_config(spec("state-kv", subjects=["fleet.state.*"]))
    assert kv.subject_transform.dest == "$KV.FLEET_STATE.{{wildcard(1)}}"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subjects": ["fleet.state.>", "fleet.health.>"]}, "at most one extra subject"),
        ({"subjects": ["fleet.state.global"]}, "needs a wildcard"),
        ({"maxMsgsPerSubject": 3}, "use history"),
    ],
)
def test_key_value_refuses_what_it_cannot_map(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_stream_config(spec("state-kv", **changes))


def test_diff_reports_only_controlled_changes() -> None:
    desired = render_stream_config(spec("events"))
    live = desired.evolve(duplicate_window=120.0, first_seq=7, metadata={"_nats.ver": "2.15.1"}, max_age=3600.0)
    assert stream_config_diff(desired, live) == {"max_age": (3600.0, 7 * 86400)}


def test_immutable_changes_name_what_nats_refuses() -> None:
    desired = render_stream_config(spec("install"))
    live = desired.evolve(retention=RetentionPolicy.LIMITS, storage=StorageType.MEMORY, max_age=60.0)
    reasons = immutable_changes(stream_config_diff(desired, live))
    assert reasons == [
        "retention can not change to or from WorkQueue (limits -> workqueue)",
        "storage type can not change (memory -> file)",
    ]
    mdsms = render_stream_config(spec("mdsms"))
    assert immutable_changes(stream_config_diff(mdsms, mdsms.evolve(retention=RetentionPolicy.LIMITS))) == []


@pytest.fixture
async def js(nats_server: Path, tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    async with running_hub(nats_server, tmp_path, hub_users()) as hub:
        nc = await hub.connect_as("fleet-operator")
        try:
            yield nc.jetstream()
        finally:
            await nc.close()


async def test_created_streams_read_back_without_drift(js: JetStreamContext) -> None:
    """The server fills many defaults; none of them may look like drift, or the operator would loop."""
    for key in SPECS:
        desired = render_stream_config(spec(key))
        await js.add_stream(desired)
        for consumer in render_consumer_configs(spec(key)):
            await js.add_consumer(desired.name, consumer)
        live = (await js.stream_info(desired.name)).config
        assert stream_config_diff(desired, live) == {}, key


async def test_immutable_changes_match_the_server(js: JetStreamContext) -> None:
    await js.add_stream(render_stream_config(spec("install")))
    live = (await js.stream_info("FLEET_INSTALL")).config
    for changes, refused in [
        ({"maxAge": "1h", "duplicateWindow": "1m"}, False),
        ({"storage": "Memory"}, True),
        ({"retention": "Limits"}, True),
    ]:
        desired = render_stream_config(spec("install", **changes))
        predicted = bool(immutable_changes(stream_config_diff(desired, live)))
        try:
            await js.update_stream(desired)
            accepted = True
        except APIError:
            accepted = False
        assert predicted == (not accepted) == refused, changes


async def test_plain_publishes_land_in_the_bucket(js: JetStreamContext) -> None:
    await js.add_stream(render_stream_config(spec("state-kv")))
    await js.publish("fleet.state.ct-fac", b"ok")
    await js.publish("fleet.state.ct-fac.gpu", b"4")
    kv = await js.key_value("FLEET_STATE")
    assert (await kv.get("ct-fac")).value == b"ok"
    assert (await kv.get("ct-fac.gpu")).value == b"4"


EXAMPLE_STREAMS = {doc["spec"]["name"]: FleetStreamSpec.model_validate(doc["spec"])
                   for path in sorted((Path(__file__).resolve().parents[2] / "examples").glob("fleetstream-*.yaml"))
                   for doc in [yaml.safe_load(path.read_text())]}


@pytest.mark.parametrize("name", sorted(EXAMPLE_STREAMS))
def test_every_standard_stream_is_bounded(name: str) -> None:
    """No shipped stream can grow without limit or take messages of any size; each Stream says what it drops
    when full (a KeyValue bucket always refuses new values)."""
    spec = EXAMPLE_STREAMS[name]
    config = render_stream_config(spec)
    assert spec.max_bytes and spec.max_msg_size, name
    assert config.max_bytes > 0 and config.max_msg_size > 0
    if spec.kind == "Stream":
        assert "discard" in spec.model_fields_set, f"{name}: choose a discard policy"


def test_a_silos_state_footprint_is_the_bound_the_readme_gives() -> None:
    """keys x history x maxMsgSize, the keys being the silo's own, its agent's and its declared aspects."""
    config = render_stream_config(EXAMPLE_STREAMS["FLEET_STATE"])
    per_key = config.max_msgs_per_subject * config.max_msg_size
    assert (MAX_STATE_ASPECTS + 2) * per_key == 800 * 1024
    assert (len(DEFAULT_STATE_ASPECTS) + 2) * per_key == 320 * 1024
    assert config.max_bytes // ((MAX_STATE_ASPECTS + 2) * per_key) >= 300  # silos at their largest


async def test_the_standard_streams_refuse_oversized_messages(js: JetStreamContext) -> None:
    for spec in EXAMPLE_STREAMS.values():
        await js.add_stream(render_stream_config(spec.model_copy(update={"hub": "h", "storage": "Memory",
                                                                         "max_bytes": "8Mi"})))
    for subject, limit in [("fleet.state.ct-fac", 16 * 1024), ("fleet.events.ct-fac.boot", 16 * 1024)]:
        await js.publish(subject, b"x" * (limit - 256))
        with pytest.raises(APIError, match="maximum"):
            await js.publish(subject, b"x" * (limit + 1))
