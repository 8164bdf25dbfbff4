"""Component processes: started in their own sessions with recorded pids, stopped by process group, reaped; and
the containers' processes under our containerd's shims."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .common import run
from .paths import Paths
from .waiting import wait_for


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def start_process(paths: Paths, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Start a component in its own session (so down() can kill its whole group) and record its pid."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.pids.mkdir(parents=True, exist_ok=True)
    with open(paths.logs / f"{name}.log", "ab") as logf:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env or _component_env(),
            cwd=paths.state,
        )
    (paths.pids / f"{name}.pid").write_text(f"{proc.pid}\n{argv[0]}\n")
    return proc.pid


def _component_env() -> dict[str, str]:
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}


def recorded(paths: Paths, name: str) -> int | None:
    """The pid recorded for a component, if that process still runs the same binary."""
    try:
        pid_text, exe = (paths.pids / f"{name}.pid").read_text().split("\n")[:2]
        pid = int(pid_text)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, ValueError):
        return None
    return pid if cmdline == exe and _pid_alive(pid) else None


def stop_process(paths: Paths, name: str, grace: float = 10.0) -> None:
    pid = recorded(paths, name)
    if pid is not None:
        _kill_group(pid, grace)
    (paths.pids / f"{name}.pid").unlink(missing_ok=True)


def _kill_group(pid: int, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not _pid_alive(pid):
            return
        time.sleep(0.1)  # poll interval until the grace deadline
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not _pid_alive(pid):
            return
        time.sleep(0.1)  # poll interval, bounded: 50 polls until the SIGKILL deadline


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, NUL-joined cmdline) for every live process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        table[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return table


def kill_shims(paths: Paths) -> None:
    """SIGKILL containerd shims of *our* containerd (matched by socket) and everything under them."""
    table = _proc_table()
    needle = f"\0-address\0{paths.containerd_sock}\0"
    shims = [pid for pid, (_, cmd) in table.items() if "containerd-shim" in cmd and needle in cmd + "\0"]
    if not shims:
        return
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    victims: list[int] = []
    stack = list(shims)
    while stack:
        pid = stack.pop()
        victims.append(pid)
        stack.extend(children.get(pid, []))
    for pid in reversed(victims):  # leaves first, so nothing is re-parented and missed
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(_pid_alive(p) for p in victims), 20, "container processes to exit", 0.1)


def container_ids(paths: Paths) -> list[str]:
    """Ids of every container (pod sandboxes included) our containerd knows, while it still runs."""
    if not paths.containerd_sock.exists():
        return []
    cmd = ["ctr", "--address", str(paths.containerd_sock), "-n", "k8s.io", "containers", "ls", "-q"]
    return run(cmd, check=False).stdout.split()
