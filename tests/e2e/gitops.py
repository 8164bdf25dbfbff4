"""GitOps for the e2e tests: a real Git remote on loopback (a bare repository served by `git daemon`) and a real
Argo CD (application controller, repo server, applicationset controller, Redis) running as local processes
against the local cluster, from the binary the launcher builds (localcluster.build_argocd)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubehelpers import Kubectl
from localcluster import Paths, free_port, wait_for
from localcluster.argocd import argocd_env

from fleet import REPO

ARGOCD_NAMESPACE = "argocd"
CHART_ARGOCD = REPO / "charts" / "fleet-lattice" / "argocd"
START_SECONDS = 60


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class LocalProcess:
    """One long-running process with its output in a log file that outlives it (shown when a test fails)."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_port: int) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        wait_for(lambda: self._alive() and _port_open(ready_port), START_SECONDS, f"{self.name} on :{ready_port}")

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
        return True

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class GitRemote:
    """A bare repository served read/write by `git daemon` on 127.0.0.1, and a clone the tests commit in."""

    root: Path
    port: int = field(default_factory=free_port)
    daemon: LocalProcess | None = None

    @property
    def url(self) -> str:
        return f"git://127.0.0.1:{self.port}/fleet.git"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@fleet.lattice.dev",
               "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@fleet.lattice.dev"}
        return subprocess.run(["git", *args], cwd=cwd or self.work, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    def start(self) -> None:
        served = self.root / "served"
        served.mkdir(parents=True)
        self._git("init", "--quiet", "--bare", "--initial-branch=main", str(served / "fleet.git"), cwd=self.root)
        self.daemon = LocalProcess("git-daemon", [
            "git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1",
            f"--port={self.port}", f"--base-path={served}", str(served)], self.root / "git-daemon.log")
        self.daemon.start(self.port)
        self._git("clone", "--quiet", self.url, str(self.work), cwd=self.root)
        self._git("checkout", "--quiet", "-b", "main")

    def commit(self, message: str, files: dict[str, str | None]) -> str:
        """Write (text) or delete (None) files, commit, push over git://; returns the new revision."""
        for rel, text in files.items():
            path = self.work / rel
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        self._git("add", "--all")
        self._git("commit", "--quiet", "-m", message)
        self._git("push", "--quiet", "origin", "main")
        return self._git("rev-parse", "HEAD")

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()


def argocd_cm() -> dict[str, Any]:
    """argocd-cm as charts/fleet-lattice/argocd/argocd-cm.yaml documents it: merged into Argo CD's ConfigMap."""
    patch = yaml.safe_load((CHART_ARGOCD / "argocd-cm.yaml").read_text())
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "labels": {"app.kubernetes.io/part-of": "argocd"}}, **patch}


@dataclass
class ArgoCD:
    """Argo CD's controllers as local processes against the cluster, in namespace argocd, with the chart's health
    checks merged into argocd-cm the way the chart's README says (`kubectl patch ... --patch-file`)."""

    kubectl: Kubectl
    workdir: Path
    paths: Paths = field(default_factory=Paths.from_env)
    processes: list[LocalProcess] = field(default_factory=list)
    server_port: int = 0

    @property
    def binary(self) -> Path:
        return self.paths.argocd()

    def install(self) -> None:
        """Argo CD's CRDs (from its module), its namespace, settings and the default project."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(self.paths.argocd_crds))
        # Fresh CRDs have no conditions for a moment, which `kubectl wait` reports as an error: retry until then.
        wait_for(lambda: self.kubectl("wait", "--for=condition=Established", "--timeout=10s", "-f",
                                      str(self.paths.argocd_crds), check=False).returncode == 0,
                 START_SECONDS, "Argo CD's CRDs Established")
        self.kubectl("create", "namespace", ARGOCD_NAMESPACE, check=False)
        part_of = {"app.kubernetes.io/part-of": "argocd"}
        # What an Argo CD install starts with, before our patch: an empty argocd-cm, argocd-secret.
        self.kubectl.apply(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm", "labels": part_of}},
            # The key Argo CD's API server would generate on first start; the applicationset controller needs it.
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-secret", "labels": part_of},
             "stringData": {"server.secretkey": secrets.token_urlsafe(32)}},
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "default"},
             "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                      "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}},
            namespace=ARGOCD_NAMESPACE,
        )
        self.kubectl("patch", "configmap", "argocd-cm", "-n", ARGOCD_NAMESPACE, "--type", "merge",
                     "--patch-file", str(CHART_ARGOCD / "argocd-cm.yaml"))

    def _process(self, component: str, args: list[str], kube: bool = True) -> LocalProcess:
        env = argocd_env(component)
        # The in-cluster destination (https://kubernetes.default.svc) is this kubeconfig's cluster, as in
        # Argo CD's own local development setup; its repo server keeps its checkouts under the test's dir.
        env.update(ARGOCD_FAKE_IN_CLUSTER="true", KUBECONFIG=str(self.kubectl.kubeconfig),
                   ARGOCD_GPG_ENABLED="false", TMPDIR=str(self.workdir / "tmp"),
                   PATH=f"{self.paths.argocd_scripts}{os.pathsep}{env.get('PATH', '')}")
        kube_args = ["--kubeconfig", str(self.kubectl.kubeconfig), "--namespace", ARGOCD_NAMESPACE] if kube else []
        process = LocalProcess(component, [str(self.binary), *kube_args, *args], self.workdir / f"{component}.log",
                               env)
        self.processes.append(process)
        return process

    def start(self) -> None:
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        redis_port, repo_port, controller_metrics = free_port(), free_port(), free_port()
        redis = LocalProcess("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                                       "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
                             self.workdir / "redis.log")
        self.processes.append(redis)
        redis.start(redis_port)
        redis_addr = f"127.0.0.1:{redis_port}"
        self._process("argocd-repo-server", [
            # Plain gRPC on loopback; the client CA path defaults to an in-pod path, which --disable-tls refuses.
            "--redis", redis_addr, "--address", "127.0.0.1", "--port", str(repo_port), "--disable-tls",
            "--client-ca-path=", "--metrics-address", "127.0.0.1", "--metrics-port", str(free_port())],
            kube=False).start(repo_port)
        repo = f"127.0.0.1:{repo_port}"
        self._process("argocd-application-controller", [
            "--redis", redis_addr, "--repo-server", repo, "--repo-server-plaintext",
            "--metrics-port", str(controller_metrics), "--persist-resource-health",
            # A push reaches Argo CD by a refresh (the tests annotate, as the webhook would); the resync only
            # backs that up, and self-heal reacts at once.
            "--app-resync", "30", "--self-heal-timeout-seconds", "0"]).start(controller_metrics)
        # The API server only for the CLI (`argocd app get`): core mode would port-forward to in-cluster pods.
        self.server_port = free_port()
        self._process("argocd-server", [
            "--redis", redis_addr, "--repo-server", repo, "--repo-server-plaintext", "--insecure", "--disable-auth",
            "--address", "127.0.0.1", "--port", str(self.server_port), "--metrics-port", str(free_port()),
            "--dex-server", "127.0.0.1:1", "--staticassets", str(self.workdir / "tmp")]).start(self.server_port)
        probe = free_port()
        self._process("argocd-applicationset-controller", [
            "--argocd-repo-server", repo, "--repo-server-plaintext", "--metrics-addr", f"127.0.0.1:{free_port()}",
            "--probe-addr", f"127.0.0.1:{probe}", "--webhook-addr", f"127.0.0.1:{free_port()}"]).start(probe)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name} log tail ---\n{p.log_tail(lines)}" for p in self.processes)

    def cli(self, *args: str) -> str:
        """The argocd CLI against the local API server (auth disabled: it listens on loopback only)."""
        proc = subprocess.run([str(self.binary), *args, "--server", f"127.0.0.1:{self.server_port}", "--plaintext",
                               "--auth-token", "none"], capture_output=True, text=True, timeout=120,
                              env={**argocd_env(), "HOME": str(self.workdir)})
        if proc.returncode != 0:
            raise AssertionError(f"argocd {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout

    def app(self, name: str) -> dict[str, Any]:
        return self.kubectl.json("get", "application", name, "-n", ARGOCD_NAMESPACE)

    def refresh(self, name: str) -> None:
        """What Argo CD's Git webhook does on a push: ask for the app to be compared with Git now, past the repo
        server's cache of what `main` points to."""
        self.kubectl("annotate", "application", name, "-n", ARGOCD_NAMESPACE, "--overwrite",
                     "argocd.argoproj.io/refresh=normal")


def application(path: Path, repo_url: str, namespace: str) -> str:
    """One of the chart's Argo CD documents (application.yaml, applicationset.yaml) syncing repo_url into namespace."""
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"]["template"]["spec"] if doc["kind"] == "ApplicationSet" else doc["spec"]
    spec["source"]["repoURL"] = repo_url
    spec["destination"]["namespace"] = namespace
    for generator in doc["spec"].get("generators", []):
        generator["git"]["repoURL"] = repo_url
    return json.dumps(doc)
