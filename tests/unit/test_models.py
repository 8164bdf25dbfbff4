"""Bad input is refused by the models with a message that names the field."""

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from fleetlattice.api.base import duration_seconds, size_bytes
from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.fleetstream import FleetStreamSpec
from fleetlattice.api.messages import InstallDone, InstallRequest
from fleetlattice.api.siloinstall import SiloInstallSpec
from fleetlattice.api.siloleaf import SiloLeafSpec

STREAM = {"hub": "eose-hub", "name": "FLEET_EVENTS", "subjects": ["fleet.events.>"]}

BAD_INPUTS: list[tuple[type[BaseModel], dict[str, Any], str]] = [
    (SiloLeafSpec, {"silo": "CT_FAC", "hub": "h"}, "silo"),
    (SiloLeafSpec, {"silo": "ct.fac", "hub": "h"}, "silo"),
    (SiloLeafSpec, {"silo": "ct-fac*", "hub": "h"}, "silo"),
    (SiloLeafSpec, {"silo": "ct fac", "hub": "h"}, "silo"),
    (SiloLeafSpec, {"silo": "a" * 64, "hub": "h"}, "silo"),
    (SiloLeafSpec, {"silo": "ct-fac", "hub": "h", "permissions": {"publish": ["fleet.>.x"]}}, "permissions.publish"),
    (SiloInstallSpec, {"silo": "-bad", "version": "v1"}, "silo"),
    (SiloInstallSpec, {"silo": "ct-fac", "version": ""}, "version"),
    (SiloInstallSpec, {"silo": "ct-fac", "version": "v1", "timeout": "15 minutes"}, "timeout"),
    (SiloInstallSpec, {"silo": "ct-fac", "version": "v1", "retries": -1}, "retries"),
    (FleetStreamSpec, {**STREAM, "subjects": ["fleet..events"]}, "subjects"),
    (FleetStreamSpec, {**STREAM, "subjects": ["fleet.ev*"]}, "subjects"),
    (FleetStreamSpec, {**STREAM, "subjects": ["fleet.>.events"]}, "subjects"),
    (FleetStreamSpec, {**STREAM, "history": 5}, "history and ttl are only valid for kind KeyValue"),
    (FleetStreamSpec, {**STREAM, "ttl": "1h"}, "history and ttl are only valid for kind KeyValue"),
    (FleetStreamSpec, {**STREAM, "maxBytes": "-5Gi"}, "maxBytes"),
    (FleetStreamSpec, {**STREAM, "maxAge": "7 days"}, "maxAge"),
    (FleetStreamSpec, {**STREAM, "name": "FLEET.EVENTS"}, "name"),
    (FleetStreamSpec, {**STREAM, "subjects": []}, "subjects: a Stream needs at least one subject"),
    (FleetStreamSpec, {**STREAM, "kind": "KeyValue", "retention": "WorkQueue"}, "retention"),
    (FleetStreamSpec, {**STREAM, "replicas": 7}, "replicas"),
    (FleetStreamSpec, {**STREAM, "storage": "Disk"}, "storage"),
    (FleetStreamSpec, {**STREAM, "maxMsgs": 0}, "maxMsgs"),
    (FleetStreamSpec, {**STREAM, "subjcts": ["x"]}, "subjcts"),
    (FleetHubSpec, {"replicas": 2}, "replicas"),
    (FleetHubSpec, {"tls": {"enabled": True}}, "tls.secretName is required"),
    (FleetHubSpec, {"limits": {"maxPayload": "1 MB"}}, "limits.maxPayload"),
    # A silo named after a subject word would gain another silo's subjects.
    *((SiloLeafSpec, {"silo": w, "hub": "h"}, "may not be named after a word of the subject map")
      for w in ("install", "events", "state", "arc", "scan", "audit", "build")),
    (SiloInstallSpec, {"silo": "state", "version": "v1"}, "may not be named after a word"),
    (SiloLeafSpec, {"silo": "ct-fac", "hub": "h", "permissions": {"publish": [">"]}}, "extra permissions may only"),
    (SiloLeafSpec, {"silo": "ct-fac", "hub": "h", "permissions": {"subscribe": ["$JS.API.>"]}}, "extra permissions"),
    (SiloLeafSpec, {"silo": "ct-fac", "hub": "h", "permissions": {"subscribe": ["fleet.install.forge.request"]}},
     "extra permissions may only"),
    # The silo's state keys are its declared aspects only, each one token, a bounded number of them.
    (SiloLeafSpec, {"silo": "ct-fac", "hub": "h", "permissions": {"publish": ["fleet.state.ct-fac.>"]}},
     "extra permissions may only"),
    (SiloLeafSpec, {"silo": "ct-fac", "hub": "h", "permissions": {"stateAspects": ["gpu.x"]}}, "stateAspects"),
    (SiloLeafSpec, {"silo": "ct-fac", "hub": "h", "permissions": {"stateAspects": ["*"]}}, "stateAspects"),
    (SiloLeafSpec, {"silo": "ct-fac", "hub": "h", "permissions": {"stateAspects": [f"a{i}" for i in range(9)]}},
     "stateAspects"),
    # Durations that overflowed a datetime, a zero timeout, params that outgrow one bus message.
    (SiloInstallSpec, {"silo": "ct-fac", "version": "v1", "timeout": "99999999999999999999999w"}, "timeout"),
    (SiloInstallSpec, {"silo": "ct-fac", "version": "v1", "timeout": "0s"}, "timeout must be longer than zero"),
    (SiloInstallSpec, {"silo": "ct-fac", "version": "v1", "params": {f"p{i}": "x" for i in range(33)}}, "params"),
    (SiloInstallSpec, {"silo": "ct-fac", "version": "v1", "params": {"ns": "x" * 1025}}, "params.ns"),
    (SiloInstallSpec, {"silo": "ct-fac", "version": "v1", "params": {"a b": "x"}}, "param names are identifiers"),
    (FleetStreamSpec, {**STREAM, "maxAge": "99999999999999999999999w"}, "maxAge"),
]


def test_the_longest_duration_a_user_can_write_fits_a_datetime() -> None:
    from datetime import UTC, datetime, timedelta

    longest = "99999w99999w999d"
    SiloInstallSpec.model_validate({"silo": "ct-fac", "version": "v1", "timeout": longest})
    assert datetime.now(UTC) + timedelta(seconds=duration_seconds(longest)) > datetime.now(UTC)


def test_extras_in_the_silos_own_subjects_are_accepted() -> None:
    spec = SiloLeafSpec.model_validate({"silo": "ct-fac", "hub": "h", "permissions": {
        "publish": ["fleet.ct-fac.custom.>", "fleet.mdsms.ct-fac.ingest"], "subscribe": ["fleet.campfire.>"]}})
    assert spec.permissions.subscribe == ["fleet.campfire.>"]


@pytest.mark.parametrize(("model", "data", "named"), BAD_INPUTS, ids=lambda v: str(v)[:40])
def test_bad_input_is_refused_naming_the_field(model: type[BaseModel], data: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert named in str(info.value)


def test_defaults_and_camel_case_round_trip() -> None:
    spec = FleetStreamSpec.model_validate({**STREAM, "maxAge": "7d", "duplicateWindow": "2m"})
    assert spec.deletion_policy == "Retain"
    assert spec.wire()["maxAge"] == "7d"
    assert FleetStreamSpec.model_validate(spec.wire()) == spec
    hub = FleetHubSpec()
    assert (hub.ports.client, hub.ports.cluster, hub.ports.leafnodes, hub.ports.monitoring) == (4222, 6222, 7422, 8222)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800),
                                               ("1h30m", 5400), ("250ms", 0.25)])
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("512", 512), ("1K", 1000), ("1Ki", 1024), ("512Mi", 512 * 2**20),
                                            ("5Gi", 5 * 2**30)])
def test_size_bytes(text: str, size: int) -> None:
    assert size_bytes(text) == size


@pytest.mark.parametrize("bad", ["-1Gi", "5GB", "", "1.5Gi"])
def test_size_bytes_refuses_bad_sizes(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        size_bytes(bad)


def test_seed_done_message_keeps_extra_fields() -> None:
    done = InstallDone.model_validate_json('{"pods":6,"health":"ok","gamma1":14.134}')
    assert (done.request_id, done.pods, done.health) == (None, 6, "ok")
    assert done.model_extra == {"gamma1": 14.134}


def test_request_wire_form_is_camel_case() -> None:
    request = InstallRequest(request_id="r1", silo="ct-fac", version="v622", attempt=1,
                             deadline="2026-11-21T17:00:00Z")
    assert b'"requestId":"r1"' in request.encode()
