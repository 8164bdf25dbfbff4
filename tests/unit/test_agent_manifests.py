"""The builtin plan's pure parts: manifests rendered from a template directory, and rollout/pods read
from workload status objects. Its cluster calls are covered by e2e on a real cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleetlattice.agent.manifests import (
    MANAGED_BY_LABEL,
    SILO_LABEL,
    ManifestError,
    describe,
    owned_by_agent,
    ready_pods,
    render_manifests,
    rolled_out,
    workloads,
)
from fleetlattice.agent.service import AgentConfig, make_plan
from fleetlattice.api.messages import InstallRequest

APP = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pemos-portal
  namespace: {{ params.ns }}
  labels: {app: portal}
spec:
  replicas: {{ params.get("replicas", 2) }}
  template:
    spec:
      containers: [{name: portal, image: "{{ params.acr }}/pemos-portal:{{ version }}"}]
---
# an empty document between objects is fine
---
apiVersion: v1
kind: Service
metadata: {name: pemos-portal, namespace: "{{ params.ns }}"}
"""
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: '{{ params.ns }}', labels: {silo: '{{ silo }}'}}\n"
PARAMS = {"ns": "eose-entry", "acr": "ctfacentry.azurecr.io"}


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    (tmp_path / "10-app.yaml.j2").write_text(APP)
    (tmp_path / "00-namespace.yaml").write_text(NAMESPACE)
    (tmp_path / "README.md").write_text("not a manifest")
    return tmp_path


DECLARED = frozenset({"eose-entry"})


def test_renders_every_object_in_file_name_order_labelled_as_the_silos(templates: Path) -> None:
    manifests = render_manifests(templates, "ct-fac", "v622", PARAMS, DECLARED)

    assert [describe(m) for m in manifests] == [
        "Namespace eose-entry",
        "Deployment eose-entry/pemos-portal",
        "Service eose-entry/pemos-portal",
    ]
    deployment = manifests[1]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "ctfacentry.azurecr.io/pemos-portal:v622"
    assert deployment["metadata"]["labels"] == {
        "app": "portal",
        SILO_LABEL: "ct-fac",
        MANAGED_BY_LABEL: "fleetlattice-agent",
    }
    assert manifests[0]["metadata"]["labels"]["silo"] == "ct-fac"
    assert [describe(w) for w in workloads(manifests)] == ["Deployment eose-entry/pemos-portal"]


def test_a_missing_param_is_an_error_not_an_empty_name(templates: Path) -> None:
    with pytest.raises(ManifestError, match="ns"):
        render_manifests(templates, "ct-fac", "v622", {"acr": "x"}, DECLARED)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("- just a list\n", "apiVersion and kind"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "no metadata.name"),
        ("key: [unclosed\n", "00-bad.yaml"),
    ],
)
def test_documents_that_are_not_objects_are_refused(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "00-bad.yaml").write_text(text)
    with pytest.raises(ManifestError, match=error):
        render_manifests(tmp_path, "ct-fac", "v1", {})


def test_a_param_fills_in_one_string_and_never_adds_an_object(templates: Path) -> None:
    """The text paste let a newline in a param add any object (a ClusterRoleBinding to cluster-admin)."""
    hostile = ("ctfac\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
               "metadata: {name: pwn}\nroleRef: {kind: ClusterRole, name: cluster-admin}")
    manifests = render_manifests(templates, "ct-fac", "v622", {**PARAMS, "acr": hostile}, DECLARED)
    assert [m["kind"] for m in manifests] == ["Namespace", "Deployment", "Service"]
    image = manifests[1]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{hostile}/pemos-portal:v622"  # one (invalid) string: the API server refuses it


@pytest.mark.parametrize("ns", ["kube-system", "eose-entry\nkind: ClusterRole"])
def test_a_namespace_from_params_must_be_one_the_silo_declared(templates: Path, ns: str) -> None:
    with pytest.raises(ManifestError, match="comes from the request and is not one this silo's agent may touch"):
        render_manifests(templates, "ct-fac", "v622", {**PARAMS, "ns": ns}, DECLARED)


def test_a_namespace_written_in_the_template_is_declared(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n"
                                      "metadata: {name: c, namespace: eose-entry}\ndata: {v: '{{ version }}'}\n")
    (manifest,) = render_manifests(tmp_path, "ct-fac", "v622", {})
    assert manifest["metadata"]["namespace"] == "eose-entry" and manifest["data"] == {"v": "v622"}


def test_kind_and_api_version_never_come_from_the_request(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("apiVersion: v1\nkind: '{{ params.kind }}'\nmetadata: {name: x}\n")
    with pytest.raises(ManifestError, match="kind may not come from the request"):
        render_manifests(tmp_path, "ct-fac", "v1", {"kind": "ClusterRoleBinding"})


def test_numbers_from_params_keep_their_type_and_filters_that_rewrite_a_value_are_refused(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n"
                                     "data: {a: {{ params.n }}, b: {{ params.n | int + 1 }}, c: 'n={{ params.n }}'}\n")
    (manifest,) = render_manifests(tmp_path, "ct-fac", "v1", {"n": "3"})
    assert manifest["data"] == {"a": 3, "b": 4, "c": "n=3"}
    (tmp_path / "d.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n"
                                     "data: {a: '{{ params.n | upper }}'}\n")
    with pytest.raises(ManifestError, match="filter rewrote a request value"):
        render_manifests(tmp_path, "ct-fac", "v1", {"n": "x"})


@pytest.mark.parametrize(("labels", "owned"), [
    ({SILO_LABEL: "ct-fac", MANAGED_BY_LABEL: "fleetlattice-agent"}, True),
    ({SILO_LABEL: "msclo", MANAGED_BY_LABEL: "fleetlattice-agent"}, False),  # another silo's agent made it
    ({}, False),  # made by hand or by another tool
])
def test_only_what_this_silos_agent_created_is_its_own(labels: dict[str, str], owned: bool) -> None:
    assert owned_by_agent({"metadata": {"labels": labels}}, "ct-fac") is owned


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no manifests"):
        render_manifests(tmp_path, "ct-fac", "v1", {})


def workload(kind: str, desired: int, **status: int) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"generation": 2}, "spec": {"replicas": desired}, "status": status}


ROLLED = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        (workload("Deployment", 3, **ROLLED), True),
        (workload("Deployment", 3, **{**ROLLED, "observedGeneration": 1}), False),  # controller has not seen it
        (workload("Deployment", 3, **{**ROLLED, "availableReplicas": 2}), False),
        (workload("Deployment", 3, **{**ROLLED, "updatedReplicas": 2}), False),
        (workload("Deployment", 3, **{**ROLLED, "replicas": 4}), False),  # an old pod still running
        (workload("StatefulSet", 3, **{**ROLLED, "availableReplicas": 0}), True),  # ready is what counts
        (workload("StatefulSet", 3, **{**ROLLED, "readyReplicas": 2}), False),
        ({"kind": "Deployment", "metadata": {"generation": 1}, "spec": {}, "status": None}, False),
    ],
)
def test_rolled_out(live: dict[str, Any], expected: bool) -> None:
    assert rolled_out(live) is expected


def test_ready_pods_counts_ready_replicas_of_the_workloads() -> None:
    live = [workload("Deployment", 3, readyReplicas=3), workload("StatefulSet", 3, readyReplicas=2)]
    live.append({"kind": "Deployment", "metadata": {}, "spec": {}})  # no status yet
    assert ready_pods(live) == 5


async def test_the_builtin_plan_renders_the_request_before_touching_the_cluster(templates: Path) -> None:
    plan = make_plan(AgentConfig(silo="ct-fac", nats_url="nats://leaf:4222", plan="builtin", manifests=templates,
                                 namespaces=DECLARED))
    request = InstallRequest(
        request_id="r1", silo="ct-fac", version="v622", params=PARAMS, attempt=1, deadline=datetime.now(UTC)
    )
    render, *rest = plan.steps(request)
    assert [render.name, *(s.name for s in rest)] == ["render", "apply", "rollout", "verify"]

    async def no_progress(step: str, index: int, total: int, message: str) -> None:
        raise AssertionError("the builtin plan's steps report through the runner")

    assert (await render.run(no_progress)).message == "rendered 3 objects"


def test_the_builtin_plan_declares_the_namespaces_its_templates_name_by_default() -> None:
    plan = make_plan(AgentConfig(silo="ct-fac", nats_url="nats://leaf:4222", plan="builtin",
                                 manifests=Path(__file__).parents[2] / "examples" / "agent" / "ct-fac"))
    assert plan.namespaces == {"eose-entry"}


def test_the_builtin_plan_needs_a_manifests_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--manifests"):
        make_plan(AgentConfig(silo="ct-fac", nats_url="nats://leaf:4222", manifests=tmp_path / "missing"))
