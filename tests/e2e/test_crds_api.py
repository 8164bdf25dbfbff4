"""The generated CRDs on a real API server: columns, categories, every example accepted, and bad
input refused by the schema or CEL rules with the message a user needs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubehelpers import Kubectl

from fleet import EXAMPLES, apply_crds

pytestmark = pytest.mark.e2e

HUB = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "FleetHub", "metadata": {"name": "h"}, "spec": {}}
LEAF = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloLeaf", "metadata": {"name": "l"},
        "spec": {"silo": "ct-fac", "hub": "h"}}
STREAM = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "FleetStream", "metadata": {"name": "s"},
          "spec": {"hub": "h", "name": "FLEET_EVENTS", "subjects": ["fleet.events.>"]}}
INSTALL = {"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloInstall", "metadata": {"name": "i"},
           "spec": {"silo": "ct-fac", "version": "v622"}}


def with_spec(base: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {**base, "spec": {**base["spec"], **spec}}


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("silo uppercase", with_spec(LEAF, silo="CT-FAC"), "spec.silo"),
    ("silo with dot", with_spec(LEAF, silo="ct.fac"), "spec.silo"),
    ("silo with wildcard", with_spec(LEAF, silo="ct-*"), "spec.silo"),
    ("silo too long", with_spec(LEAF, silo="a" * 64), "spec.silo"),
    ("silo missing", {**LEAF, "spec": {"hub": "h"}}, "spec.silo"),
    ("leaf mode", with_spec(LEAF, leaf={"mode": "Somewhere"}), "spec.leaf.mode"),
    ("extra permission subject", with_spec(LEAF, permissions={"publish": ["a..b"]}), "spec.permissions.publish"),
    ("hub replicas 2", with_spec(HUB, replicas=2), "spec.replicas"),
    ("hub tls without secret", with_spec(HUB, tls={"enabled": True}), "tls.secretName is required"),
    ("hub bad size", with_spec(HUB, jetstream={"maxFileStore": "5 GB"}), "spec.jetstream.maxFileStore"),
    ("hub port range", with_spec(HUB, ports={"client": 70000}), "spec.ports.client"),
    ("stream subject empty token", with_spec(STREAM, subjects=["fleet..x"]), "spec.subjects"),
    ("stream subject > not last", with_spec(STREAM, subjects=["fleet.>.x"]), "spec.subjects"),
    ("stream partial wildcard", with_spec(STREAM, subjects=["fleet.ev*"]), "spec.subjects"),
    ("stream no subjects", with_spec(STREAM, subjects=[]), "a Stream needs at least one subject"),
    ("kv field on stream", with_spec(STREAM, history=5), "history and ttl are only valid for kind KeyValue"),
    ("ttl on stream", with_spec(STREAM, ttl="1h"), "history and ttl are only valid for kind KeyValue"),
    ("negative size", with_spec(STREAM, maxBytes="-1Gi"), "spec.maxBytes"),
    ("bad duration", with_spec(STREAM, maxAge="7 days"), "spec.maxAge"),
    ("stream name with dot", with_spec(STREAM, name="FLEET.EVENTS"), "spec.name"),
    ("retention enum", with_spec(STREAM, retention="Forever"), "spec.retention"),
    ("kv workqueue", with_spec(STREAM, kind="KeyValue", retention="WorkQueue", subjects=[]),
     "a KeyValue bucket always has retention Limits"),
    ("replicas 6", with_spec(STREAM, replicas=6), "spec.replicas"),
    ("maxMsgs zero", with_spec(STREAM, maxMsgs=0), "spec.maxMsgs"),
    ("install empty version", with_spec(INSTALL, version=""), "spec.version"),
    ("install bad timeout", with_spec(INSTALL, timeout="soon"), "spec.timeout"),
    ("install retries", with_spec(INSTALL, retries=11), "spec.retries"),
    ("install params not strings", with_spec(INSTALL, params={"n": {"a": 1}}), "spec.params"),
    # Hardening: every silo name that is a word of the subject map, and extras that undo isolation.
    *((f"silo named {word}", with_spec(LEAF, silo=word), "may not be named after a word of the subject map")
      for word in ("install", "events", "state", "arc", "scan", "audit", "build", "mdsms", "lean", "campfire")),
    ("install for a reserved silo", with_spec(INSTALL, silo="install"), "may not be named after a word"),
    ("extra publish >", with_spec(LEAF, permissions={"publish": [">"]}), "extra permissions may only name"),
    ("extra publish JS API", with_spec(LEAF, permissions={"publish": ["$JS.API.>"]}), "extra permissions may only"),
    ("extra subscribe other silo", with_spec(LEAF, permissions={"subscribe": ["fleet.install.forge.request"]}),
     "extra permissions may only name"),
    ("extra subscribe fleet.>", with_spec(LEAF, permissions={"subscribe": ["fleet.>"]}), "extra permissions"),
    ("install duration overflow", with_spec(INSTALL, timeout="99999999999999999999999w"), "spec.timeout"),
    ("install zero timeout", with_spec(INSTALL, timeout="0s"), "timeout must be longer than zero"),
    ("install too many params", with_spec(INSTALL, params={f"p{i}": "x" for i in range(33)}), "spec.params"),
    ("install param too long", with_spec(INSTALL, params={"ns": "x" * 1025}), "spec.params"),
    ("install param name", with_spec(INSTALL, params={"bad name": "x"}), "param names are identifiers"),
    ("stream duration overflow", with_spec(STREAM, maxAge="99999999999999999999999w"), "spec.maxAge"),
    # A silo's state keys: its declared aspects only, each one token, at most 8 (its footprint is bounded).
    ("extra publish own state", with_spec(LEAF, permissions={"publish": ["fleet.state.ct-fac.>"]}),
     "extra permissions may only name"),
    ("state aspect with dot", with_spec(LEAF, permissions={"stateAspects": ["gpu.x"]}),
     "spec.permissions.stateAspects"),
    ("state aspect wildcard", with_spec(LEAF, permissions={"stateAspects": [">"]}), "spec.permissions.stateAspects"),
    ("too many state aspects", with_spec(LEAF, permissions={"stateAspects": [f"a{i}" for i in range(9)]}),
     "spec.permissions.stateAspects"),
]


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    apply_crds(kubectl)


def test_categories_and_columns(crds: None, kubectl: Kubectl, namespace: str) -> None:
    for doc in (HUB, LEAF, STREAM, INSTALL):
        kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    table = kubectl("get", "fleet", "-n", namespace).stdout
    for header in ("READY", "VERSION", "LEAVES", "STREAMS", "SILO", "HUB", "CONNECTED", "STREAM", "KIND",
                   "MESSAGES", "BYTES", "PHASE", "PROGRESS", "PODS", "AGE"):
        assert header in table, f"{header} missing from `kubectl get fleet`:\n{table}"
    for short in ("fhub", "leaf", "fstream", "sinst"):
        assert kubectl("get", short, "-n", namespace).returncode == 0
    explained = kubectl("explain", "siloinstall.spec.version").stdout
    assert "Version to install" in explained


def test_every_example_is_accepted(crds: None, kubectl: Kubectl, namespace: str) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path))


def test_defaults_are_applied_by_the_api_server(crds: None, kubectl: Kubectl, namespace: str) -> None:
    out = kubectl("apply", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(STREAM))
    spec = json.loads(out.stdout)["spec"]
    assert (spec["deletionPolicy"], spec["storage"], spec["retention"], spec["kind"]) == ("Retain", "File", "Limits",
                                                                                        "Stream")
    out = kubectl("apply", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(LEAF))
    assert json.loads(out.stdout)["spec"]["permissions"]["stateAspects"] == ["gpu", "memory"]


@pytest.mark.parametrize(("case", "doc", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused(crds: None, kubectl: Kubectl, namespace: str, case: str, doc: dict[str, Any],
                              message: str) -> None:
    proc = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False)
    assert proc.returncode != 0, f"{case}: accepted"
    assert message in proc.stderr, f"{case}: {proc.stderr}"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "OTHER", "name is immutable"),
    ("storage", "Memory", "storage is immutable"),
    ("kind", "KeyValue", "kind is immutable"),
])
def test_immutable_fields(crds: None, kubectl: Kubectl, namespace: str, field: str, value: str, message: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(STREAM))
    changed = with_spec(STREAM, **{field: value})
    proc = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_silo_is_immutable(crds: None, kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(LEAF))
    proc = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(with_spec(LEAF, silo="msclo")),
                   check=False)
    assert "silo is immutable" in proc.stderr


def test_extras_in_the_silos_own_subjects_are_accepted(crds: None, kubectl: Kubectl, namespace: str) -> None:
    doc = with_spec(LEAF, permissions={"publish": ["fleet.ct-fac.custom.>", "fleet.mdsms.ct-fac.ingest"],
                                       "subscribe": ["fleet.campfire.>", "fleet.arc.ct-fac.result"]})
    kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(doc))
