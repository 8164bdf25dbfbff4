"""Session fixtures for the operator e2e tests: CRDs installed and `fleetlattice run` running."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubehelpers import Kubectl

from fleet import OperatorProcess, apply_crds


@pytest.fixture(scope="session")
def operator(kubeconfig: Path, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    apply_crds(kubectl)
    process = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()
    print(f"\n--- operator log tail ({process.log_path}) ---\n{process.log_tail(40)}", file=sys.stderr)


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
