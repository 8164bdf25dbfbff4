"""py-spy attached to the operator for one scenario: the raw collapsed stacks go to bench/results/, and the
frames the operator spends most of its samples in are summarised (pure) for the report."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Profiler:
    pid: int
    output: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Beside this interpreter first: a virtualenv's bin/ need not be on PATH.
        py_spy = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
        if py_spy is None:
            raise RuntimeError("--profile needs py-spy: pip install -e '.[bench]'")
        # --nonblocking: sampling without pausing the operator, so the figures stay what they would be.
        self.proc = subprocess.Popen([py_spy, "record", "--pid", str(self.pid), "--rate", "50", "--format", "raw",
                                      "--nonblocking", "--output", str(self.output)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> list[tuple[str, float]]:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            self.proc.wait(timeout=60)
        return top_frames(self.output.read_text()) if self.output.exists() else []


def top_frames(collapsed: str, limit: int = 15, within: str = "fleetlattice") -> list[tuple[str, float]]:
    """Frames from `within` (path substring) by inclusive share of all samples, highest first.
    Input: py-spy's raw format, one `frame;frame;...;leaf count` line per distinct stack."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            if within in frame:
                inclusive[frame] += int(count)
    return [(frame, round(100 * n / total, 1)) for frame, n in inclusive.most_common(limit)] if total else []
