"""The Helm chart (charts/fleet-lattice): `helm lint` and `helm template` with the pinned Helm, and the rendered
objects: least-privilege RBAC derived from the code (rbac_usage.py), the Deployment's security settings, HA,
namespaced RBAC, ServiceMonitor. Helm comes from tests/e2e/image/helm.py (built from its Go module into the
cache); without it these tests fail, never skip."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import rbac_usage
from fleetlattice.api.kinds import KINDS
from fleetlattice.clients.kube import RESOURCES

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "fleet-lattice"
SYNC_HINT = "run `python charts/fleet-lattice/hack/sync.py`"
# A cold Helm build takes minutes on 2 cores; CI builds it before pytest (tests/e2e/image/helm.py).
pytestmark = pytest.mark.timeout(1800)

Objects = list[dict[str, Any]]


def _helm_module() -> Any:
    spec = importlib.util.spec_from_file_location("fl_helm", REPO / "tests" / "e2e" / "image" / "helm.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fl_helm"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess[str]]:
    module = _helm_module()
    binary = module.find_helm()
    if binary is None:
        try:
            binary = module.build_helm()
        except module.HelmBuildError as exc:
            pytest.fail(f"helm is needed and could not be built ({exc}); "
                        "run `PYTHONPATH=tests/e2e/cluster python tests/e2e/image/helm.py`")
    home = tmp_path_factory.mktemp("helm-home")
    # Helm keeps config and caches under XDG dirs: keep them out of the user's home.
    env = {**os.environ, "XDG_CACHE_HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_DATA_HOME": str(home)}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


VARIANTS: dict[str, list[str]] = {
    "default": [],
    "ha": ["--set", "ha.enabled=true"],
    "namespaced": ["--set", "rbac.namespaced=true", "--set", "watchNamespaces={fleet,edge}"],
    "ha-namespaced": ["--set", "ha.enabled=true,rbac.namespaced=true", "--set", "watchNamespaces={fleet,edge}"],
    "servicemonitor": ["--set", "monitoring.serviceMonitor.enabled=true"],
}


@pytest.fixture(scope="session")
def render(helm: Callable[..., subprocess.CompletedProcess[str]]) -> Callable[[str], Objects]:
    cache: dict[str, Objects] = {}

    def rendered(variant: str) -> Objects:
        if variant not in cache:
            out = helm("template", "fleet-lattice", str(CHART), "-n", "fleet-system", *VARIANTS[variant]).stdout
            cache[variant] = [doc for doc in yaml.safe_load_all(out) if doc]
        return cache[variant]

    return rendered


def one(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def kinds(objects: Objects) -> set[str]:
    return {o["kind"] for o in objects}


# ------------------------------------------------------------------ files kept in step


def test_chart_crds_are_the_generated_crds() -> None:
    top = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert chart.keys() == top.keys(), SYNC_HINT
    for name in top:
        assert chart[name] == top[name], f"charts/fleet-lattice/crds/{name} differs from crds/{name}: {SYNC_HINT}"


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


# ------------------------------------------------------------------ helm lint / template


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint(helm: Callable[..., subprocess.CompletedProcess[str]], variant: str) -> None:
    helm("lint", "--strict", str(CHART), *VARIANTS[variant])


def test_crds_render_with_include_crds(helm: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    out = helm("template", "x", str(CHART), "--include-crds").stdout
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(out) if d and d["kind"] == "CustomResourceDefinition"}
    assert names == {f"{k.plural}.fleet.lattice.dev" for k in KINDS}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--set", "rbac.namespaced=true"], "watchNamespaces"),
        (["--set", "notAValue=1"], "notAValue"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "ha.enabled=true,ha.replicas=1"], "replicas"),
    ],
)
def test_invalid_values_are_refused(helm: Callable[..., subprocess.CompletedProcess[str]], args: list[str],
                                    error: str) -> None:
    proc = helm("template", "x", str(CHART), *args, check=False)
    assert proc.returncode != 0
    assert error in proc.stderr


# ------------------------------------------------------------------ the Deployment


def container(objects: Objects) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_default_deployment(render: Callable[[str], Objects]) -> None:
    deploy = one(render("default"), "Deployment", "fleet-lattice")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    c = container(render("default"))
    assert c["image"] == "ghcr.io/fleet-lattice/operator:0.1.0"
    assert c["args"][:5] == ["run", "--liveness", "http://0.0.0.0:8080/healthz", "--metrics-port", "9090"]
    assert "--peering" not in c["args"] and "--namespace" not in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"healthz": 8080, "metrics": 9090}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_security_context(render: Callable[[str], Objects]) -> None:
    pod = one(render("default"), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


def test_ha_runs_peered_replicas(render: Callable[[str], Objects]) -> None:
    objects = render("ha")
    deploy = one(objects, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    c = container(objects)
    assert c["args"][c["args"].index("--peering") + 1] == "fleet-lattice"
    env = {e["name"]: e for e in c["env"]}
    assert env["FLEETLATTICE_PEERING_PRIORITY"]["value"] == "auto"
    assert env["FLEETLATTICE_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert crds == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    peering = one(objects, "ClusterKopfPeering", "fleet-lattice")
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_standalone_has_no_peering(render: Callable[[str], Objects]) -> None:
    assert not kinds(render("default")) & {"CustomResourceDefinition", "ClusterKopfPeering", "PodDisruptionBudget"}
    assert "FLEETLATTICE_PEERING_PRIORITY" not in {e["name"] for e in container(render("default"))["env"]}


# ------------------------------------------------------------------ RBAC


def rules(objects: Objects, kind: str) -> list[dict[str, Any]]:
    return [r for o in objects if o["kind"] == kind for r in o.get("rules", [])]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rbac_has_no_wildcards(render: Callable[[str], Objects], variant: str) -> None:
    for rule in rules(render(variant), "ClusterRole") + rules(render(variant), "Role"):
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert "nonResourceURLs" not in rule


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rbac_grants_exactly_what_the_operator_uses(render: Callable[[str], Objects], variant: str) -> None:
    """Every verb granted is used and every verb used is granted (rbac_usage derives the use from the code)."""
    objects = render(variant)
    ha, namespaced = "ha" in variant, "namespaced" in variant
    peering = "fleet-lattice"
    in_namespaces = rbac_usage.namespaced_grants()
    if ha and namespaced:
        in_namespaces |= rbac_usage.peering_grants("kopfpeerings", peering)
    cluster = set(rbac_usage.CLUSTER_GRANTS)
    if ha and not namespaced:
        cluster |= rbac_usage.peering_grants("clusterkopfpeerings", peering)
    if namespaced:
        roles = {o["metadata"]["namespace"]: o["rules"] for o in objects if o["kind"] == "Role"}
        assert set(roles) == {"fleet", "edge"}
        for namespace, role_rules in roles.items():
            assert rbac_usage.mismatch(rbac_usage.granted(role_rules), in_namespaces) == [], namespace
    else:
        assert "Role" not in kinds(objects)
        cluster |= in_namespaces
    assert rbac_usage.mismatch(rbac_usage.granted(rules(objects, "ClusterRole")), cluster) == []


def test_rbac_check_fails_on_a_missing_or_an_unused_grant(render: Callable[[str], Objects]) -> None:
    """The comparison above can fail: one grant taken away, one unused grant added, each is named."""
    granted = rbac_usage.granted(rules(render("default"), "ClusterRole"))
    used = rbac_usage.namespaced_grants() | rbac_usage.CLUSTER_GRANTS
    assert rbac_usage.mismatch(granted, used) == []
    missing = ("", "secrets", "list", None)
    assert rbac_usage.mismatch(granted - {missing}, used) == ["used, not granted: core/secrets list"]
    extra = ("apps", "statefulsets", "delete", None)
    assert rbac_usage.mismatch(granted | {extra}, used) == ["granted, never used: apps/statefulsets delete"]


def test_rbac_derivation_sees_the_calls() -> None:
    """The derivation reads the call sites it should: a sample of known calls, each with its verbs."""
    used = rbac_usage.namespaced_grants()
    for grant in [("", "secrets", "list", None),  # apply/credentials.py, one LIST per namespace
                  ("", "pods", "patch", None),  # the config-hash annotation
                  ("apps", "deployments", "create", None),  # the rendered leaf
                  ("fleet.lattice.dev", "siloinstalls/status", "patch", None),  # the install status store
                  ("fleet.lattice.dev", "fleetstreams/status", "patch", None),  # kopf, for write_status
                  ("fleet.lattice.dev", "siloleaves", "watch", None),  # kopf
                  ("", "events", "create", None)]:  # kopf.event
        assert grant in used, grant
    assert ("", "pods", "create", None) not in used  # the annotation is a merge patch, never a create


def test_clusterwide_rbac_binds_the_service_account(render: Callable[[str], Objects]) -> None:
    binding = one(render("default"), "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fleet-lattice", "namespace": "fleet-system"}]


@pytest.mark.parametrize("variant", ["namespaced", "ha-namespaced"])
def test_namespaced_rbac(render: Callable[[str], Objects], variant: str) -> None:
    objects = render(variant)
    bindings = {o["metadata"]["namespace"] for o in objects if o["kind"] == "RoleBinding"}
    assert bindings == {"fleet", "edge"}
    c = container(objects)
    assert [c["args"][i + 1] for i, a in enumerate(c["args"]) if a == "--namespace"] == ["fleet", "edge"]
    if variant == "ha-namespaced":
        assert {o["metadata"]["namespace"] for o in objects if o["kind"] == "KopfPeering"} == {"fleet", "edge"}


# ------------------------------------------------------------------ metrics


def test_metrics_service_and_servicemonitor(render: Callable[[str], Objects]) -> None:
    assert "ServiceMonitor" not in kinds(render("default"))
    objects = render("servicemonitor")
    service = one(objects, "Service", "fleet-lattice-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    monitor = one(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_sync_wave_annotation(render: Callable[[str], Objects]) -> None:
    for obj in render("default"):
        assert obj["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "0", obj["kind"]


def test_every_kind_the_operator_renders_is_one_its_client_knows() -> None:
    """A rendered kind missing from clients/kube.RESOURCES fails at apply time, in the cluster only (the RBAC test
    above checks the chart grants each; found so: the leaf's NetworkPolicy)."""
    assert rbac_usage.rendered_hub_kinds() | rbac_usage.rendered_leaf_kinds() <= set(RESOURCES)
