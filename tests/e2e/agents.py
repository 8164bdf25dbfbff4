"""Silo agents as real processes on the host, dialing their silo's leaf by its Service ClusterIP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from fleetlattice.api.defaults import LOCAL_SEED_ENV

# An install script for the `command` plan whose behaviour each SiloInstall picks through spec.params:
# failAt=<step> fails there (exit 3 with retryable=false), waitFile=<path> holds the apply step until the
# test creates that file, pods=<n> is reported in the result, runLog=<path> gets one line per run of the
# plan (the fault suite counts duplicate runs from it), stepSeconds=<s> makes each step take that long.
INSTALL_SCRIPT = textwrap.dedent('''\
    import json, pathlib, sys, time
    request = json.load(sys.stdin)
    params = request.get("params", {})
    if params.get("runLog"):
        with open(params["runLog"], "a") as runs:
            runs.write(json.dumps({"install": params.get("install"), "requestId": request.get("requestId")}) + "\\n")
    steps = ["render", "apply", "verify"]
    for index, step in enumerate(steps, 1):
        time.sleep(float(params.get("stepSeconds", "0")))  # the work a real step does
        print(json.dumps({"step": step, "index": index, "total": len(steps), "message": step + " ok"}), flush=True)
        wait = params.get("waitFile")
        while step == "apply" and wait and not pathlib.Path(wait).exists():
            time.sleep(0.2)  # poll until the test releases the install
        if step == params.get("failAt"):
            print(step + " exploded: " + params.get("error", "boom"), file=sys.stderr)
            sys.exit(1 if params.get("retryable", "false") == "true" else 3)
    print(json.dumps({"result": {"pods": int(params.get("pods", "3")), "health": "ok"}}), flush=True)
''')


@dataclass
class AgentProcess:
    silo: str
    nats_url: str
    nkey_seed: str  # the leaf's local NKey (Secret siloleaf-<silo>-local), handed over as a pod's env would
    workdir: Path
    plan_args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def command_plan(cls, silo: str, nats_url: str, nkey_seed: str, workdir: Path) -> AgentProcess:
        script = workdir / "install.py"
        script.write_text(INSTALL_SCRIPT)
        return cls(silo, nats_url, nkey_seed, workdir,
                   ["--plan", "command", "--command", f"{sys.executable} {script}"])

    @classmethod
    def builtin_plan(cls, silo: str, nats_url: str, nkey_seed: str, workdir: Path, manifests: Path,
                     kubeconfig: Path, namespaces: tuple[str, ...] = ()) -> AgentProcess:
        return cls(silo, nats_url, nkey_seed, workdir,
                   ["--plan", "builtin", "--manifests", str(manifests), "--kubeconfig", str(kubeconfig),
                    *(f"--namespace={ns}" for ns in namespaces)])

    @property
    def log_path(self) -> Path:
        return self.workdir / f"agent-{self.silo}.log"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleetlattice.cli", "agent", "--silo", self.silo, "--nats", self.nats_url,
             "--heartbeat", "2", "--state-dir", str(self.workdir / "state"), *self.plan_args],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", LOCAL_SEED_ENV: self.nkey_seed},
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as when a node dies mid-install."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
