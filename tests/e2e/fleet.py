"""Helpers the fleet e2e tests share: the operator as a real process, the custom resources through
kubectl, and NATS clients that reach the hub from the host by its Service's ClusterIP."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubehelpers import Kubectl
from localcluster import free_port, wait_for
from nats.aio.client import Client as NATS

from fleetlattice.api.defaults import MONITOR_PORT
from fleetlattice.clients import nats_connection
from fleetlattice.render.names import HubRef

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def _http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value}."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


@dataclass
class OperatorProcess:
    """`fleetlattice run` out of cluster, logging to a file the tests print on failure."""

    kubeconfig: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    log_offset: int = 0
    # Run under memray, writing its capture here (`python -m bench --memray`).
    memray_output: Path | None = None

    def start(self) -> None:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        memray = ["-m", "memray", "run", "--aggregate", "--force", "-q", "-o", str(self.memray_output)] \
            if self.memray_output else []
        self.proc = subprocess.Popen(
            [sys.executable, *memray, "-m", "fleetlattice.cli", "run", "--kubeconfig", str(self.kubeconfig),
             "--hub-address", "clusterip", "--liveness", f"http://127.0.0.1:{self.port}/healthz",
             "--metrics-port", str(self.metrics_port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        wait_for(self._alive, 60, "operator liveness endpoint")

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited:\n{self.log_tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
            return response.status == 200

    def metrics(self) -> dict[str, float]:
        return parse_metrics(_http_get(f"http://127.0.0.1:{self.metrics_port}/metrics"))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        """What the current operator process has logged since it started."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class InClusterOperator:
    """The operator installed by the Helm chart from the locally built image, as platform teams run it."""

    kubectl: Kubectl
    helm: Path
    namespace: str = "fleet-system"
    release: str = "fleet-lattice"

    def install(self) -> None:
        self.kubectl("create", "namespace", self.namespace, check=False)
        subprocess.run(
            [str(self.helm), "upgrade", "--install", self.release, str(REPO / "charts" / "fleet-lattice"),
             "--kubeconfig", str(self.kubectl.kubeconfig), "--namespace", self.namespace,
             "--set", "image.repository=localhost/fleet-lattice/operator", "--set", "image.tag=dev",
             "--set", "image.pullPolicy=Never", "--wait", "--timeout", "180s"],
            check=True, capture_output=True, text=True,
        )
        self.start()

    def _deploy(self, *args: str) -> None:
        self.kubectl(*args, "-n", self.namespace, f"deployment/{self.release}")

    def start(self) -> None:
        self._deploy("scale", "--replicas=1")
        self._deploy("rollout", "status", "--timeout=180s")
        wait_for(self._pod, 60, "operator pod running")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self._deploy("scale", "--replicas=0")
        if sig == signal.SIGKILL:  # no graceful shutdown, as when its node dies
            self.kubectl("delete", "pods", "-n", self.namespace, "-l", "app.kubernetes.io/component=operator",
                         "--grace-period=0", "--force", check=False)
        wait_for(lambda: not self.kubectl.json("get", "pods", "-n", self.namespace, "-l",
                                               "app.kubernetes.io/component=operator")["items"], 120,
                 "operator pods gone")

    def restart(self) -> None:
        self.stop()
        self.start()

    def _pod(self) -> dict[str, Any] | None:
        pods = [p for p in self.kubectl.json("get", "pods", "-n", self.namespace, "-l",
                                             "app.kubernetes.io/component=operator")["items"]
                if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        return pods[0] if pods else None

    def metrics(self) -> dict[str, float]:
        pod = self._pod()
        assert pod is not None, "no running operator pod"
        return parse_metrics(_http_get(f"http://{pod['status']['podIP']}:9090/metrics"))

    def log_text(self) -> str:
        return self.kubectl("logs", "-n", self.namespace, f"deployment/{self.release}", "--tail=-1",
                            check=False).stdout

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def apply_crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd))


def get(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return kubectl.json("get", kind, name, "-n", namespace)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def is_ready(kubectl: Kubectl, kind: str, name: str, namespace: str) -> bool:
    return condition(get(kubectl, kind, name, namespace), "Ready").get("status") == "True"


def secret_value(kubectl: Kubectl, namespace: str, name: str, key: str) -> str:
    data = kubectl.json("get", "secret", name, "-n", namespace)["data"]
    return base64.b64decode(data[key]).decode()


def service_url(kubectl: Kubectl, namespace: str, service: str) -> str:
    svc = kubectl.json("get", "service", service, "-n", namespace)
    return f"nats://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


@dataclass
class Hub:
    """A FleetHub as a test reaches it from the host."""

    kubectl: Kubectl
    namespace: str
    name: str = "eose-hub"

    @property
    def url(self) -> str:
        return service_url(self.kubectl, self.namespace, self.name)

    def conf_text(self) -> str:
        """The hub's whole rendered config as the pods mount it: nats.conf and the user parts it includes."""
        ref = HubRef(self.name, self.namespace)
        return "\n".join(text for name in ref.config_maps for text in (self.kubectl.json(
            "get", "configmap", name, "-n", self.namespace).get("data") or {}).values())

    def operator_seed(self) -> str:
        return secret_value(self.kubectl, self.namespace, f"{self.name}-auth", "operator-seed")

    def silo_seed(self, silo: str) -> str:
        return secret_value(self.kubectl, self.namespace, f"siloleaf-{silo}-credentials", "seed")

    def local_seed(self, silo: str) -> str:
        """What the silo's own clients sign in to its leaf with."""
        return secret_value(self.kubectl, self.namespace, f"siloleaf-{silo}-local", "seed")

    async def connect(self, seed: str, **options: Any) -> NATS:
        return await nats_connection.connect(servers=self.url, nkeys_seed_str=seed, connect_timeout=5,
                                             max_reconnect_attempts=2, **options)

    async def connect_operator(self) -> NATS:
        return await self.connect(self.operator_seed())

    def pods(self) -> list[dict[str, Any]]:
        return self.kubectl.json("get", "pods", "-n", self.namespace, "-l",
                                 f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=hub")["items"]

    def subscribers(self, subject: str) -> int:
        """How many client connections to the hub's servers hold a subscription on exactly `subject`
        (their monitoring endpoints' connz): a background subscriber is ready once this grows."""
        port = get(self.kubectl, "fleethub", self.name, self.namespace)["spec"].get("ports", {}).get(
            "monitoring", MONITOR_PORT)
        total = 0
        for pod in self.pods():
            connz = json.loads(_http_get(f"http://{pod['status']['podIP']}:{port}/connz?subs=1&limit=1024"))
            total += sum(subject in (c.get("subscriptions_list") or []) for c in connz.get("connections") or [])
        return total


def bring_up(kubectl: Kubectl, namespace: str, files: list[str], streams: list[str], silos: list[str],
             hub_seconds: float = 240) -> Hub:
    """Apply examples/<files> in `namespace`; return the hub once it, the FleetStreams and the silos' leaves
    are Ready and connected."""
    for name in files:
        kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / name))
    hub = Hub(kubectl, namespace)
    wait_for(lambda: is_ready(kubectl, "fleethub", hub.name, namespace), hub_seconds, "hub Ready")
    for stream in streams:
        wait_for(lambda s=stream: is_ready(kubectl, "fleetstream", s, namespace), 120, f"{stream} Ready")
    for silo in silos:
        wait_for(lambda s=silo: get(kubectl, "siloleaf", s, namespace).get("status", {}).get("connected"), 180,
                 f"leaf {silo} connected")
    return hub


def pod_identities(pods: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """name -> (uid, restarts of the nats container): equal before and after means no restart."""
    result = {}
    for pod in pods:
        restarts = sum(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses", [])
                       if c["name"] == "nats")
        result[pod["metadata"]["name"]] = (pod["metadata"]["uid"], restarts)
    return result
