"""Fixtures for end-to-end tests against a real Kubernetes cluster.

``--cluster=local`` (default) runs the Docker-free single-node cluster from
tests/e2e/cluster/localcluster/: it reuses one that is already up and healthy
(``python tests/e2e/cluster/cluster up``) and tears down only a cluster this session started.
``--cluster=kind`` uses pytest-kubernetes with kind (machines with Docker);
``--cluster=existing`` uses ``--kubeconfig`` or ``$KUBECONFIG``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import localcluster
import pytest
from kubehelpers import Kubectl, scratch_namespace
from localcluster import WaitTimeout, wait_for

__all__ = ["Kubectl", "WaitTimeout", "wait_for"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fleet-lattice e2e")
    group.addoption(
        "--operator",
        choices=("process", "helm"),
        default="process",
        help="run the operator as a local process (default) or in cluster from the Helm chart and the built image",
    )
    group.addoption(
        "--cluster",
        choices=("local", "kind", "existing"),
        default="local",
        help="which cluster e2e tests run against (default: local, the Docker-free cluster)",
    )
    group.addoption("--kubeconfig", default=None, help="kubeconfig for --cluster=existing (default: $KUBECONFIG)")


# Operator-level session fixtures (CRDs applied, `fleetlattice run` running) live beside
# the tests that use them; a non-root conftest cannot use `pytest_plugins`, so load them here.
OPERATOR_FIXTURES = "fleet_fixtures"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test against a real cluster and real nats-server")
    if (Path(__file__).parent / f"{OPERATOR_FIXTURES}.py").exists():
        config.pluginmanager.import_plugin(OPERATOR_FIXTURES)


@pytest.fixture(scope="session")
def cluster_mode(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--cluster"))


@pytest.fixture(scope="session")
def cluster_bin_dir() -> Path:
    """Directory of the pinned binaries (kubectl, kubelet, ..., nats-server) built from Go modules."""
    return localcluster.build()


@pytest.fixture(scope="session")
def kubeconfig(request: pytest.FixtureRequest, cluster_mode: str, cluster_bin_dir: Path) -> Iterator[Path]:
    if cluster_mode == "local":
        yield from _local_cluster()
    elif cluster_mode == "kind":
        yield from _kind_cluster()
    else:
        path = request.config.getoption("--kubeconfig") or os.environ.get("KUBECONFIG")
        if not path:
            pytest.fail("--cluster=existing needs --kubeconfig=PATH or $KUBECONFIG")
        yield Path(path).expanduser().resolve()


def _local_cluster() -> Iterator[Path]:
    paths = localcluster.Paths.from_env()
    started_here = not localcluster.components_running(paths)
    try:
        config = localcluster.up(paths)
    except Exception:
        print(localcluster.log_tails(paths), file=sys.stderr)
        localcluster.down(paths)
        raise
    yield config
    # A cluster someone started with `cluster up` outlives the session.
    if started_here and not os.environ.get("FLEET_LATTICE_KEEP_CLUSTER"):
        localcluster.down(paths)


def _kind_cluster() -> Iterator[Path]:
    from pytest_kubernetes.providers import select_provider_manager  # only on machines with Docker

    cluster = select_provider_manager("kind")("fleet-lattice-e2e")
    cluster.create()
    assert cluster.kubeconfig is not None
    yield Path(cluster.kubeconfig)
    cluster.delete()


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path, cluster_bin_dir: Path) -> Kubectl:
    return Kubectl(cluster_bin_dir / "kubectl", kubeconfig)


@pytest.fixture(scope="session")
def load_image_archive(cluster_mode: str, kubeconfig: Path) -> Callable[[Path], None]:
    """Import an OCI/docker archive (e.g. the operator image) into the cluster's node(s)."""

    def load(archive: Path) -> None:
        if cluster_mode == "local":
            localcluster.import_image_archive(archive)
        elif cluster_mode == "kind":
            subprocess.run(["kind", "load", "image-archive", str(archive), "--name", "fleet-lattice-e2e"], check=True)
        else:
            pytest.fail("--operator=helm needs --cluster=local or kind: "
                        "no image can be loaded into an existing cluster")

    return load


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    with scratch_namespace(kubectl, request.node.name) as name:
        yield name
