"""NACK, the NATS project's JetStream controller, as the benchmark's reference: its jetstream-controller
built from the pinned Go module (bench/gomod/nack) into the cache, its own CRDs from that module, run out
of cluster in control-loop mode against the same API server and the same hub as Fleet Lattice."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from localcluster import free_port, go_env, go_version

from .harness import wait_for

GOMOD = Path(__file__).resolve().parent / "gomod" / "nack"
MODULE = "github.com/nats-io/nack"
STREAM_API_VERSION = "jetstream.nats.io/v1beta2"


def version() -> str:
    for line in (GOMOD / "go.mod").read_text().splitlines():
        if line.strip().startswith(MODULE + " "):
            return line.split()[1]
    raise RuntimeError(f"{GOMOD / 'go.mod'} does not require {MODULE}")



def build(cache: Path) -> Path:
    """jetstream-controller for the pinned NACK, built once per go.mod/go.sum/Go version."""
    go = go_version()
    if go is None:
        raise RuntimeError("Go is needed to build NACK's jetstream-controller (bench/gomod/nack)")
    key = hashlib.sha256((GOMOD / "go.mod").read_bytes() + (GOMOD / "go.sum").read_bytes()
                         + go.encode()).hexdigest()[:12]
    out = cache / "bench-bin" / f"nack-{version()}-{key}"
    binary = out / "jetstream-controller"
    if binary.is_file():
        return binary
    staging = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(["go", "build", "-trimpath", "-mod=readonly", "-ldflags=-s -w", "-o", f"{staging}/", "tool"],
                   cwd=GOMOD, env=go_env(), check=True)
    staging.rename(out)
    return binary


def crds_path() -> Path:
    """deploy/crds.yml of the pinned module, from the Go module cache."""
    info = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{version()}"], cwd=GOMOD, env=go_env(),
                          capture_output=True, text=True, check=True).stdout
    return Path(json.loads(info)["Dir"]) / "deploy" / "crds.yml"


def stream_manifest(name: str, stream: str, subject: str, max_age: str) -> dict[str, object]:
    return {"apiVersion": STREAM_API_VERSION, "kind": "Stream", "metadata": {"name": name},
            "spec": {"name": stream, "subjects": [subject], "storage": "file", "replicas": 1, "maxAge": max_age}}


@dataclass
class NackController:
    """jetstream-controller --control-loop, watching one namespace, with the hub's URL and the operator's NKey."""

    binary: Path
    kubeconfig: Path
    namespace: str
    nats_url: str
    nkey_seed: str
    workdir: Path
    health_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "nack.log"

    def start(self) -> None:
        cache = self.workdir / "nack-cache"
        cache.mkdir(parents=True, exist_ok=True)
        seed_file = self.workdir / "nack.nk"  # NACK reads the seed from a file (--nkey)
        seed_file.write_text(self.nkey_seed)
        seed_file.chmod(0o600)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "--control-loop", "--s", self.nats_url, "--nkey", str(seed_file),
             "--namespace", self.namespace,
             "--cache-dir", str(cache), f"--health-probe-bind-address=127.0.0.1:{self.health_port}"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            start_new_session=True,
        )
        wait_for(self._healthy, 60, "NACK jetstream-controller healthz")

    def _healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"NACK exited:\n{self.log_path.read_text()[-3000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as response:
            return response.status == 200

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None
