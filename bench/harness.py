"""The benchmarks' environment: the local cluster (the one the e2e tests use), the CRDs, the operator as
a real process, a hub, and the bench's own Kubernetes client. Reuses the e2e harness rather than copying it:
the launcher (tests/e2e/cluster) and the harness (tests/e2e) are import roots, given by PYTHONPATH (see the
README's `python -m bench` command) as pyproject.toml's pytest `pythonpath` gives them to the tests."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import localcluster
from kubehelpers import Kubectl, create_namespace, delete_namespace
from kubernetes import client, config
from localcluster import async_wait_for, wait_for

from fleet import EXAMPLES, Hub, OperatorProcess, apply_crds, condition, is_ready
from fleetlattice.api.kinds import API_VERSION

from .audit import AuditLog

REPO = Path(__file__).resolve().parents[1]

__all__ = ["EXAMPLES", "Hub", "OperatorProcess", "async_wait_for", "condition", "create_namespace",
           "delete_namespace", "wait_for"]

BENCH_USER_AGENT = "fleet-lattice-bench"
HUB_READY_SECONDS = 300


@dataclass
class Env:
    kubeconfig: Path
    kubectl: Kubectl
    workdir: Path
    paths: localcluster.Paths
    api: client.ApiClient

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def create(self, plural: str, namespace: str, body: dict[str, Any], group_version: str = API_VERSION) -> None:
        group, version = group_version.split("/")
        self.custom.create_namespaced_custom_object(group, version, namespace, plural, body)

    def list(self, plural: str, namespace: str, group_version: str = API_VERSION) -> list[dict[str, Any]]:
        group, version = group_version.split("/")
        return self.custom.list_namespaced_custom_object(group, version, namespace, plural)["items"]

    def operator(self, name: str) -> OperatorProcess:
        return OperatorProcess(self.kubeconfig, self.workdir / f"operator-{name}.log")

    def audit(self) -> AuditLog:
        return AuditLog(localcluster.audit_log_path(self.paths))


def start_env(workdir: Path) -> Env:
    """The local cluster up (built and started if needed), CRDs established, a client for the bench."""
    paths = localcluster.Paths.from_env()
    bins = localcluster.build(paths)
    kubeconfig = localcluster.up(paths)
    kubectl = Kubectl(bins / "kubectl", kubeconfig)
    apply_crds(kubectl)
    api = config.new_client_from_config(str(kubeconfig))
    api.user_agent = BENCH_USER_AGENT
    # Burst creates from a few threads: urllib3's default pool of 4 would serialise them.
    api.configuration.connection_pool_maxsize = 16
    shutil.rmtree(workdir, ignore_errors=True)  # logs of this run only
    workdir.mkdir(parents=True)
    return Env(kubeconfig, kubectl, workdir, paths, api)


# The example hub (1 replica) with the install bus's stream and the silo state bucket.
HUB_MANIFESTS = ("fleethub-eose-hub.yaml", "fleetstream-install.yaml", "fleetstream-state.yaml")


def deploy_hub(env: Env, namespace: str) -> Hub:
    """The example hub and its install bus, Ready (needs an operator running)."""
    for manifest in HUB_MANIFESTS:
        env.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / manifest))
    hub = Hub(env.kubectl, namespace)
    wait_for(lambda: is_ready(env.kubectl, "fleethub", hub.name, namespace), HUB_READY_SECONDS, "hub Ready")
    for stream in ("fleet-install", "fleet-state"):
        wait_for(lambda s=stream: is_ready(env.kubectl, "fleetstream", s, namespace), 120,
                 f"FleetStream {stream} Ready")
    return hub


def peak_rss_mib(pid: int) -> float:
    """The process's high-water resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for pid {pid}")


def count_requests(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals by verb, the writes (create/update/patch/delete) by resource, and the requests the API server
    refused by resource, verb and code (a 409 is a write paid twice, and usually a read in between)."""
    by_verb: dict[str, int] = {}
    writes: dict[str, int] = {}
    refused: dict[str, int] = {}
    for event in events:
        verb = event["verb"]
        by_verb[verb] = by_verb.get(verb, 0) + 1
        ref = event.get("objectRef") or {}
        key = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        if verb in ("create", "update", "patch", "delete"):
            writes[key] = writes.get(key, 0) + 1
        code = (event.get("responseStatus") or {}).get("code", 0)
        if code >= 400:
            refused[f"{verb} {key} {code}"] = refused.get(f"{verb} {key} {code}", 0) + 1
    return {"total": len(events), "by_verb": dict(sorted(by_verb.items())), "writes": dict(sorted(writes.items())),
            "refused": dict(sorted(refused.items()))}


def machine_conditions() -> dict[str, Any]:
    versions = json.loads((localcluster.Paths.from_env().bin_dir / ".complete").read_text())
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "kubernetes": versions["kubernetes"],
        "etcd": versions["etcd"],
        "nats_server": versions["nats-server"],
        "nack": versions["nack"],
        "fleet_lattice": _version(),
    }


def _version() -> str:
    from importlib.metadata import version

    return version("fleet-lattice")


# The operator is quiet when it made at most QUIET_REQUESTS API requests in the last QUIET_WINDOW seconds: its steady
# state is a few status reads per hub every 10 s.
QUIET_WINDOW = 2.0
QUIET_REQUESTS = 4


async def operator_quiet(env: Env, timeout: float = 300) -> float:  # noqa: ASYNC109 -- a deadline
    """Wait until the operator is quiet (from the audit log); returns how long that took, in seconds."""
    audit = env.audit()
    started = time.monotonic()
    recent: deque[tuple[float, int]] = deque()

    async def quiet() -> bool:
        now = time.monotonic()
        recent.append((now, audit.take_operator_requests()))
        while recent[0][0] < now - QUIET_WINDOW:
            recent.popleft()
        return now - started >= QUIET_WINDOW and sum(n for _, n in recent) <= QUIET_REQUESTS

    await async_wait_for(quiet, timeout, "the operator quiet", interval=0.25)
    return round(time.monotonic() - started, 1)


def earlier_scenarios_gone(env: Env, current: str, timeout: float = 300) -> None:
    """Wait until no namespace of an earlier scenario (other than `current`) is still being deleted: its teardown
    (the operator seeing a hundred objects go) would count in the next scenario's requests and compete with its
    work. An operator must be running: the hubs and streams there carry its finalizer."""

    def gone() -> bool:
        items = env.kubectl.json("get", "namespaces")["items"]
        return not any(ns["metadata"]["name"].startswith("e2e-bench-") and ns["metadata"]["name"] != current
                       for ns in items)

    wait_for(gone, timeout, "earlier scenarios' namespaces deleted", 1.0)
