"""The cluster's life: up (idempotent, serialised across processes), down (every trace, even after a failed up),
an API server restart (the fault suite's), health, status and the component logs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path

from .api import api_ok, coredns_ready, kubectl, node_ready
from .builds import build
from .certs import make_pki, write_kubeconfig
from .cleanup import remove_cgroups, remove_container_log_links, remove_state, unmount_all
from .common import CLI, ClusterError, log
from .components import (
    COMPONENTS,
    start_apiserver,
    start_containerd,
    start_controllers,
    start_etcd,
    start_node,
    wait_apiserver,
)
from .coredns import coredns_manifests, dns_smoke_test
from .images import import_images
from .network import CNI_BIN_DIR, NODE_NAME, network_down, network_up, remove_cni_results
from .paths import Paths
from .pins import CLUSTER_DIR
from .processes import container_ids, kill_shims, recorded, stop_process
from .waiting import wait_for

REQUIRED_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "conntrack", "openssl", "ip")


class _Phases:
    """Records how long each phase of up() takes, to show where the time goes."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self.t0 = time.monotonic()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        took = time.monotonic() - start
        self.times.append((name, took))
        log(f"  {name:<28} {took:6.1f}s")

    def summary(self) -> None:
        log(f"up: ready in {time.monotonic() - self.t0:.1f}s")


def components_running(paths: Paths | None = None) -> bool:
    """True if every component process that up() starts is alive."""
    paths = paths or Paths.from_env()
    return paths.kubeconfig.exists() and all(recorded(paths, name) is not None for name in COMPONENTS)


def is_healthy(paths: Paths | None = None) -> bool:
    paths = paths or Paths.from_env()
    if not components_running(paths):
        return False
    try:
        return api_ok(paths, "/readyz") and node_ready(paths) and coredns_ready(paths)
    except (OSError, urllib.error.URLError, KeyError, ValueError):
        return False


def check_host() -> None:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    plugins = [CNI_BIN_DIR / name for name in ("bridge", "host-local", "loopback", "portmap")]
    missing += [str(p) for p in plugins if not p.exists()]
    if missing:
        raise ClusterError(f"missing {', '.join(missing)}: run `{CLI} install-deps`")
    if os.geteuid() != 0:
        raise ClusterError("the local cluster needs root (it runs kubelet, containerd and sets up networking)")


@contextlib.contextmanager
def _exclusive(paths: Paths) -> Iterator[None]:
    """Serialise up/down across processes (a developer's shell, pytest, the demo) on this host."""
    lock = paths.state.with_name(paths.state.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(paths: Paths | None = None) -> Path:
    """Start the cluster (or return at once if it is already up and healthy); returns the kubeconfig path."""
    paths = paths or Paths.from_env()
    with _exclusive(paths):
        return _up(paths)


def _up(paths: Paths) -> Path:
    if components_running(paths):
        # Running already: give a briefly busy cluster a moment instead of recreating it.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: is_healthy(paths), 60, "the running cluster to be healthy", 1.0)
            log(f"up: already running and healthy; kubeconfig {paths.kubeconfig}")
            return paths.kubeconfig
    check_host()
    if paths.state.exists():
        log("up: found a stale or half-started cluster, tearing it down first")
        _down(paths)
    phases = _Phases()
    with phases.phase("build (cache check)"):
        bins = build(paths)
    paths.state.mkdir(parents=True)
    paths.state.chmod(0o700)
    with phases.phase("certificates + kubeconfigs"):
        make_pki(paths)
        write_kubeconfig(paths, paths.kubeconfig, "admin")
    with phases.phase("network (bridge, guards)"):
        network_up(paths)
    with phases.phase("etcd + containerd"):
        start_containerd(paths)
        start_etcd(paths, bins)
    with phases.phase("apiserver + image import"):
        # The apiserver takes seconds to become ready: import images meanwhile.
        start_apiserver(paths, bins)
        import_images(paths)
        wait_apiserver(paths)
    with phases.phase("controllers"):
        start_controllers(paths, bins)
    with phases.phase("kubelet + kube-proxy"):
        start_node(paths, bins)
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": coredns_manifests()})
        kubectl(paths, "apply", "--server-side", "--force-conflicts", "-f", "-", input_text=manifest)
    with phases.phase("node Ready"):
        wait_for(lambda: node_ready(paths), 180, f"node {NODE_NAME} to be Ready", 0.5)
    with phases.phase("CoreDNS ready"):
        wait_for(lambda: coredns_ready(paths), 180, "CoreDNS to be ready", 0.5)
    with phases.phase("DNS smoke test from a pod"):
        dns_smoke_test(paths)
    phases.summary()
    log(f"kubeconfig: {paths.kubeconfig}")
    return paths.kubeconfig


def down(paths: Paths | None = None) -> None:
    """Stop everything up() started and remove every trace of it. Safe after a failed or partial up().

    Every step runs even if an earlier one failed, so one stuck piece never
    leaves the rest behind; the errors are raised together at the end.
    """
    paths = paths or Paths.from_env()
    with _exclusive(paths):
        _down(paths)


def _down(paths: Paths) -> None:
    start = time.monotonic()
    errors: list[str] = []

    def step(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # keep tearing down; report at the end
            errors.append(f"{what}: {exc}")
            log(f"down: {what} failed: {exc}")

    # Node side first, so nothing restarts containers while they are being killed.
    for name in ("kubelet", "kube-proxy"):
        step(f"stop {name}", lambda name=name: stop_process(paths, name, grace=5))
    sandboxes: list[str] = []
    step("list containers", lambda: sandboxes.extend(container_ids(paths)))
    step("kill containers", lambda: kill_shims(paths))
    for name in ("containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        step(f"stop {name}", lambda name=name: stop_process(paths, name, grace=10))
    step("unmount", lambda: unmount_all([paths.state]))
    step("network", lambda: network_down(paths))
    step("unmount (after netns)", lambda: unmount_all([paths.state]))
    step("cgroups", remove_cgroups)
    step("container log links", lambda: remove_container_log_links(paths))
    step("CNI result cache", lambda: remove_cni_results(sandboxes))
    step("remove state dir", lambda: remove_state(paths))
    log(f"down: done in {time.monotonic() - start:.1f}s")
    if errors:
        raise ClusterError("down finished with errors: " + "; ".join(errors))


def restart_apiserver(paths: Paths | None = None) -> float:
    """Stop kube-apiserver and start it again as up() does (same flags, same etcd: nothing is lost), under the
    up/down lock so that no concurrent up() takes the missing process for a broken cluster and tears it down.
    Returns the seconds from the stop until /readyz answers again."""
    paths = paths or Paths.from_env()
    with _exclusive(paths):
        bins = build(paths)  # a cache check: the binaries are there since up()
        start = time.monotonic()
        stop_process(paths, "kube-apiserver", grace=10)
        start_apiserver(paths, bins)
        wait_apiserver(paths)
        return time.monotonic() - start


def status(paths: Paths | None = None) -> int:
    paths = paths or Paths.from_env()
    if not paths.state.exists():
        print("down (no state dir)")
        return 1
    for name in COMPONENTS:
        pid = recorded(paths, name)
        print(f"  {name:<24} {'running pid ' + str(pid) if pid else 'NOT RUNNING'}")
    healthy = is_healthy(paths)
    print(f"healthy: {healthy}")
    if paths.kubeconfig.exists() and paths.kubectl().exists():
        print(kubectl(paths, "get", "nodes,pods", "-A", "-o", "wide", check=False).stdout)
    return 0 if healthy else 1


def log_tails(paths: Paths | None = None, lines: int = 25) -> str:
    """The last lines of every component log, for failure reports."""
    paths = paths or Paths.from_env()
    out = []
    for logfile in sorted(paths.logs.glob("*.log")) if paths.logs.is_dir() else []:
        tail = logfile.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"===== {logfile.name} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(out) or f"(no logs under {paths.logs})"


def install_deps() -> None:
    script = CLUSTER_DIR / "install-deps.sh"
    subprocess.run(["bash", str(script)], check=True)
