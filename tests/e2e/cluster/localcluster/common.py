"""What every part of the launcher uses: its log line, its error type, running a host command."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

# The command line, as messages tell the user to run it (tests/e2e/cluster/cluster is the CLI's wrapper).
CLI = "python tests/e2e/cluster/cluster"


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", flush=True)


class ClusterError(RuntimeError):
    """Raised when the cluster cannot be built, started or checked."""


def run(cmd: Sequence[str], check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input_text)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc
