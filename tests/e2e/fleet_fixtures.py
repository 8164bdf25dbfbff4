"""Session fixtures for the operator e2e tests: CRDs installed and `fleetlattice run` running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import localcluster
import pytest
from kubehelpers import Kubectl

from fleet import REPO, InClusterOperator, OperatorProcess, apply_crds
from natsclients import NatsCli, NodeRunner

# How the API server's authorizer words a refusal: `... is forbidden: User "system:serviceaccount:..." cannot ...`.
RBAC_DENIAL = re.compile(r'is forbidden: User "[^"]+" cannot ')

# The launcher's import root (tests/e2e/cluster): the image tools take the cache root and Go version from it.
LAUNCHER_ROOT = Path(localcluster.__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def operator(request: pytest.FixtureRequest, kubeconfig: Path, kubectl: Kubectl,
             load_image_archive: Callable[[Path], None],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess | InClusterOperator]:
    apply_crds(kubectl)
    running: OperatorProcess | InClusterOperator
    if request.config.getoption("--operator") == "helm":
        load_image_archive(Path(_tool("build_image.py")))
        running = InClusterOperator(kubectl, Path(_tool("helm.py")))
        running.install()
    else:
        running = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
        running.start()
    yield running
    print(f"\n--- operator log tail ---\n{running.log_tail(40)}", file=sys.stderr)
    log = running.log_text()
    running.stop()
    # Under the chart's RBAC (--operator=helm) a request it does not grant is refused with 403, which kopf and
    # the handlers log and retry: a test may pass through it. The operator's last run must show none. Only the
    # authorizer's refusal counts: a 403 for an Event in a namespace being deleted (NamespaceTerminating, when a
    # test's namespace goes) is not about permissions.
    forbidden = [line for line in log.splitlines() if RBAC_DENIAL.search(line)]
    assert not forbidden, "the API server refused the operator:\n" + "\n".join(forbidden[:20])


@pytest.fixture(scope="session")
def nats_cli(cluster_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> NatsCli:
    """The `nats` CLI built from gomod/natscli (by `cluster build`, the cluster_bin_dir fixture), signed in as
    nobody yet (`.signed_in(server=..., nkey=...)`)."""
    return NatsCli(localcluster.Paths.from_env().natscli(), tmp_path_factory.mktemp("natscli-config"))


@pytest.fixture(scope="session")
def node(cluster_bin_dir: Path) -> NodeRunner:
    """node with nats.js, which `cluster build` (the cluster_bin_dir fixture) installed into the cache."""
    return NodeRunner(localcluster.Paths.from_env().node_dir / "node_modules")


def _tool(script: str) -> str:
    """Runs one of tests/e2e/image/*.py (cached builds); its last stdout line is the artefact's path."""
    pythonpath = os.pathsep.join(filter(None, (str(LAUNCHER_ROOT), os.environ.get("PYTHONPATH"))))
    out = subprocess.run([sys.executable, str(REPO / "tests" / "e2e" / "image" / script)], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": pythonpath}).stdout
    return out.strip().splitlines()[-1]


@pytest.fixture(autouse=True)
def _operator_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """On a failing test that used the operator, show what the operator logged."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "operator" in request.fixturenames:
        process: OperatorProcess = request.getfixturevalue("operator")
        print(f"\n--- operator log tail ---\n{process.log_tail()}", file=sys.stderr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    setattr(item, f"rep_{call.when}", outcome.get_result())
