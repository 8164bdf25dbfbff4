"""GitOps end to end: a real Argo CD syncs the fleet from a real Git remote into the cluster and reports health
through the chart's Lua checks, installed via argocd-cm as the chart documents. The Application is the chart's
argocd/application.yaml; the Git folder is examples/ with the sync waves the README gives."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubehelpers import Kubectl
from localcluster import wait_for
from localcluster.argocd import admin_health

from agents import AgentProcess
from argocd import argocd_health
from fleet import EXAMPLES, REPO, Hub, get, service_url
from gitops import ARGOCD_NAMESPACE, CHART_ARGOCD, ArgoCD, GitRemote, application, argocd_cm

pytestmark = pytest.mark.e2e

APP = "fleet"
NAMESPACE = "e2e-gitops"  # the Application's destination (application.yaml says `fleet`)
FLEET_GROUP = "fleet.lattice.dev"
WAVE = "argocd.argoproj.io/sync-wave"
FIRST_SYNC_SECONDS = 420  # the hub's pod starts, JetStream comes up, the leaf dials in
SYNC_SECONDS = 240


def annotated(path: Path, **annotations: str) -> str:
    doc = yaml.safe_load(path.read_text())
    doc["metadata"].setdefault("annotations", {}).update(annotations)
    return yaml.safe_dump(doc, sort_keys=False)


def fleet_file(name: str, text: str) -> dict[str, str | None]:
    return {f"fleet/{name}": text}


def example(name: str) -> dict[str, str | None]:
    """An example as it sits in the Git folder: unchanged but for its sync wave."""
    return fleet_file(name, annotated(EXAMPLES / name, **{WAVE: "1"}))


def install(name: str, silo: str, **params: str) -> dict[str, str | None]:
    doc = yaml.safe_load((EXAMPLES / "siloinstall-ct-fac-v622.yaml").read_text())
    doc["metadata"] = {"name": name, "annotations": {WAVE: "1"}}
    doc["spec"].update(silo=silo, params=params, retries=0)
    return fleet_file(f"siloinstall-{name}.yaml", yaml.safe_dump(doc, sort_keys=False))


def initial_tree() -> dict[str, str | None]:
    # CRDs at wave -1, and Delete=false: removing the Application must never take every fleet resource with it.
    files: dict[str, str | None] = {
        f"fleet/crds/{crd.name}": annotated(crd, **{WAVE: "-1", "argocd.argoproj.io/sync-options": "Delete=false"})
        for crd in sorted((REPO / "crds").glob("*.yaml"))}
    for name in ("fleethub-eose-hub.yaml", "fleetstream-install.yaml", "fleetstream-state.yaml",
                 "siloleaf-ct-fac.yaml"):
        files |= example(name)
    return files


@pytest.fixture(scope="module")
def argocd(kubectl: Kubectl, cluster_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[ArgoCD]:
    """Argo CD's controllers running; on a failure in this module, their log tails (the whole logs stay in the
    test's tmp dir, which pytest keeps)."""
    argo = ArgoCD(kubectl, tmp_path_factory.mktemp("argocd"))
    failed_before = request.session.testsfailed
    argo.install()
    try:
        argo.start()
        yield argo
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\n{argo.logs()}\nfull logs: {argo.workdir}", file=sys.stderr)
        argo.stop()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitRemote]:
    git = GitRemote(tmp_path_factory.mktemp("git"))
    git.start()
    yield git
    git.stop()


@pytest.fixture(scope="module")
def fleet_app(argocd: ArgoCD, remote: GitRemote, kubectl: Kubectl, operator: Any) -> Iterator[str]:
    """The chart's Application, synced from the first commit; deleted with what it synced afterwards."""
    revision = remote.commit("fleet: hub, install bus streams, silo ct-fac", initial_tree())
    kubectl("apply", "-f", "-", input=application(CHART_ARGOCD / "application.yaml", remote.url, NAMESPACE))
    yield revision
    kubectl("delete", "application", APP, "-n", ARGOCD_NAMESPACE, "--wait=false", check=False)
    wait_for(lambda: kubectl("get", "application", APP, "-n", ARGOCD_NAMESPACE, check=False).returncode != 0,
             SYNC_SECONDS, "the Application and what it synced deleted")
    kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def hub(kubectl: Kubectl) -> Hub:
    return Hub(kubectl, NAMESPACE)


@pytest.fixture(scope="module")
def agents() -> Iterator[list[AgentProcess]]:
    """Silo agents the tests start once their silo exists; they run until the module is done (a SiloInstall with
    scrubOnDelete needs its agent to be deleted)."""
    running: list[AgentProcess] = []
    yield running
    for agent in running:
        agent.stop()


def status(argo: ArgoCD, app: str = APP) -> dict[str, Any]:
    return argo.app(app).get("status") or {}


def fleet_resources(app_status: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in app_status.get("resources", []) if r.get("group") == FLEET_GROUP]


class NotYet(AssertionError):
    """What the app looks like while it is not there yet: wait_for reports the last one on timeout."""


def settled(argo: ArgoCD, revision: str, health: str = "Healthy", app: str = APP) -> dict[str, Any]:
    """The app's status once Argo CD has synced `revision`, every resource is Synced and the app is `health`."""
    st = status(argo, app)
    sync, operation = st.get("sync", {}), st.get("operationState") or {}
    seen = (f"sync {sync.get('status')} at {sync.get('revision')}, health {st.get('health')}, "
            f"operation {operation.get('phase')}: {operation.get('message')}, conditions {st.get('conditions')}, "
            f"resources {[(r['kind'], r['name'], r.get('status'), r.get('health')) for r in st.get('resources', [])]}")
    if (sync.get("status"), sync.get("revision")) != ("Synced", revision) or \
            st.get("health", {}).get("status") != health or \
            not all(r.get("status") == "Synced" for r in st.get("resources", [])):
        raise NotYet(seen)
    return st


def push(argo: ArgoCD, remote: GitRemote, message: str, files: dict[str, str | None]) -> str:
    revision = remote.commit(message, files)
    argo.refresh(APP)
    return revision


def assert_argo_agrees(argo: ArgoCD, kubectl: Kubectl, app_status: dict[str, Any]) -> set[str]:
    """Argo CD's recorded health of every fleet resource is what `argocd admin ... health` and the lupa run say
    of the live object; returns the kinds seen."""
    cm = argocd_cm()
    for resource in fleet_resources(app_status):
        live = get(kubectl, resource["kind"], resource["name"], resource["namespace"])
        recorded = resource["health"]["status"]
        assert admin_health(live, cm, argo.binary)[0] == recorded, resource
        assert argocd_health(live)[0] == recorded, resource
    return {r["kind"] for r in fleet_resources(app_status)}


def test_first_sync_is_synced_and_healthy(argocd: ArgoCD, fleet_app: str, kubectl: Kubectl) -> None:
    st = wait_for(lambda: settled(argocd, fleet_app), FIRST_SYNC_SECONDS, "first sync Synced and Healthy")
    kinds = {(r["kind"], r["name"]): r for r in st["resources"]}
    assert {("FleetHub", "eose-hub"), ("SiloLeaf", "ct-fac"), ("FleetStream", "fleet-install"),
            ("CustomResourceDefinition", "siloleaves.fleet.lattice.dev")} <= set(kinds)
    for resource in fleet_resources(st):
        assert resource["health"]["status"] == "Healthy", resource  # Argo CD ran our Lua on each of them
    assert assert_argo_agrees(argocd, kubectl, st) == {"FleetHub", "SiloLeaf", "FleetStream"}


def health_of(app_status: dict[str, Any]) -> dict[str, str]:
    return {r["name"]: r["health"]["status"] for r in fleet_resources(app_status)}


def test_a_new_silo_and_its_install_go_progressing_then_healthy(argocd: ArgoCD, remote: GitRemote, fleet_app: str,
                                                                kubectl: Kubectl, hub: Hub,
                                                                agents: list[AgentProcess], tmp_path: Path) -> None:
    wait_for(lambda: settled(argocd, fleet_app), FIRST_SYNC_SECONDS, "first sync Synced and Healthy")
    revision = push(argocd, remote, "silo msclo and its v622 install",
                    example("siloleaf-msclo.yaml") | install("msclo-v622", "msclo", pods="4"))
    # No agent in msclo yet: the install waits for one, which Argo CD shows as Progressing, not Degraded.
    st = wait_for(lambda: settled(argocd, revision, "Progressing"), SYNC_SECONDS, "msclo synced, Progressing")
    assert health_of(st)["msclo-v622"] == "Progressing", health_of(st)
    wait_for(lambda: get(kubectl, "siloleaf", "msclo", NAMESPACE).get("status", {}).get("connected"), 180,
             "leaf msclo connected")
    agent = AgentProcess.command_plan("msclo", service_url(kubectl, NAMESPACE, "msclo-leaf"), hub.local_seed("msclo"),
                                      tmp_path)
    agents.append(agent)
    agent.start()
    st = wait_for(lambda: settled(argocd, revision), SYNC_SECONDS, "msclo's install done, app Healthy")
    assert get(kubectl, "siloinstall", "msclo-v622", NAMESPACE)["status"]["phase"] == "Succeeded"
    assert assert_argo_agrees(argocd, kubectl, st) == {"FleetHub", "SiloLeaf", "FleetStream", "SiloInstall"}


def test_a_failing_install_makes_the_app_degraded(argocd: ArgoCD, remote: GitRemote, kubectl: Kubectl) -> None:
    revision = push(argocd, remote, "msclo: an install that fails",
                    install("msclo-broken", "msclo", failAt="apply", error="image pull failed"))
    st = wait_for(lambda: settled(argocd, revision, "Degraded"), SYNC_SECONDS, "the failed install: app Degraded")
    assert health_of(st)["msclo-broken"] == "Degraded", health_of(st)
    assert_argo_agrees(argocd, kubectl, st)
    revision = push(argocd, remote, "msclo: drop the failed install", {"fleet/siloinstall-msclo-broken.yaml": None})
    wait_for(lambda: settled(argocd, revision), SYNC_SECONDS, "failed install pruned, app Healthy")
    assert kubectl("get", "siloinstall", "msclo-broken", "-n", NAMESPACE, check=False).returncode != 0


def refreshed(argo: ArgoCD, reconciled_before: str | None) -> dict[str, Any] | None:
    """The app's status once Argo CD has taken the refresh annotation and compared again since reconciled_before."""
    app = argo.app(APP)
    if "argocd.argoproj.io/refresh" in (app["metadata"].get("annotations") or {}):
        return None
    st = app.get("status") or {}
    return st if st.get("reconciledAt") != reconciled_before else None


def test_the_operator_never_makes_the_app_out_of_sync(argocd: ArgoCD, kubectl: Kubectl) -> None:
    """The operator wrote status, kopf annotations and owned children all along; self-heal is on. A sync Argo CD
    started because the live state drifted would re-apply a revision already synced: none did."""
    before = status(argocd)
    revisions = [h["revision"] for h in before.get("history", [])]
    assert len(revisions) >= 4, before.get("history")
    assert len(revisions) == len(set(revisions)), f"self-heal re-synced a revision (a fight): {before['history']}"
    # A hard refresh diffs every live object with Git again, now.
    kubectl("annotate", "application", APP, "-n", ARGOCD_NAMESPACE, "--overwrite",
            "argocd.argoproj.io/refresh=hard")
    st = wait_for(lambda: refreshed(argocd, before.get("reconciledAt")), SYNC_SECONDS, "hard refresh done")
    assert st["sync"]["status"] == "Synced", [r for r in st["resources"] if r.get("status") != "Synced"]
    assert [h["revision"] for h in st.get("history", [])] == revisions


def test_pruning_a_silo_from_git_removes_it_cleanly(argocd: ArgoCD, remote: GitRemote, kubectl: Kubectl) -> None:
    revision = push(argocd, remote, "retire silo msclo", {"fleet/siloleaf-msclo.yaml": None,
                                                          "fleet/siloinstall-msclo-v622.yaml": None})
    wait_for(lambda: settled(argocd, revision), SYNC_SECONDS, "msclo pruned, app Synced and Healthy")
    for kind, name in (("siloleaf", "msclo"), ("siloinstall", "msclo-v622"), ("deployment", "msclo-leaf")):
        wait_for(lambda k=kind, n=name: kubectl("get", k, n, "-n", NAMESPACE, check=False).returncode != 0, 120,
                 f"{kind} {name} gone (finalizers released)")
    assert "msclo" not in health_of(status(argocd))


def silo_folder(silo: str) -> dict[str, str | None]:
    doc = yaml.safe_load((EXAMPLES / "siloleaf-ct-fac.yaml").read_text())
    doc["metadata"]["name"] = doc["spec"]["silo"] = silo
    return {f"silos/{silo}/siloleaf.yaml": yaml.safe_dump(doc, sort_keys=False)}


@pytest.fixture
def silo_set(argocd: ArgoCD, remote: GitRemote, fleet_app: str, kubectl: Kubectl) -> Iterator[str]:
    """Two silo folders in Git, then the chart's ApplicationSet; deleted (with its Applications) afterwards."""
    revision = push(argocd, remote, "silos as folders: edge-a, edge-b", silo_folder("edge-a") | silo_folder("edge-b"))
    # Once the fleet Application is at the new revision, the repo server's view of `main` (which it caches for
    # minutes) is too, and the ApplicationSet's first reconcile generates from it.
    wait_for(lambda: settled(argocd, revision), SYNC_SECONDS, "the fleet Application at the silos commit")
    kubectl("apply", "-f", "-", input=application(CHART_ARGOCD / "applicationset.yaml", remote.url, NAMESPACE))
    yield revision
    kubectl("delete", "applicationset", "fleet-silos", "-n", ARGOCD_NAMESPACE, check=False)
    wait_for(lambda: {i["metadata"]["name"] for i in kubectl.json("get", "siloleaves", "-n", NAMESPACE)["items"]}
             .isdisjoint({"edge-a", "edge-b"}), SYNC_SECONDS, "the silo Applications' SiloLeaves deleted")


def test_an_applicationset_makes_one_application_per_silo_folder(argocd: ArgoCD, silo_set: str,
                                                                  kubectl: Kubectl) -> None:
    for silo in ("edge-a", "edge-b"):
        st = wait_for(lambda s=silo: settled(argocd, silo_set, app=f"silo-{s}"), SYNC_SECONDS,
                      f"Application silo-{silo} Synced and Healthy")
        assert health_of(st) == {silo: "Healthy"}
        assert assert_argo_agrees(argocd, kubectl, st) == {"SiloLeaf"}


def test_argocd_app_get_shows_the_fleet_synced_and_healthy(argocd: ArgoCD) -> None:
    """What README's Argo CD section shows: the CLI's view, from the same Application. Once settled: the silos the
    previous test's teardown removed reload the hub, which Argo CD rightly shows as Progressing for a moment."""
    revision = status(argocd).get("sync", {}).get("revision", "")
    wait_for(lambda: settled(argocd, revision), SYNC_SECONDS, "the fleet app settled after the silos went")
    out = argocd.cli("app", "get", APP)
    print(f"\n$ argocd app get {APP}\n{out}")
    assert "Sync Status:        Synced" in out and "Health Status:      Healthy" in out, out
