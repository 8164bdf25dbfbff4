"""What down() removes besides processes and the network: mounts under the state dir, kubelet's cgroups,
container log links, and the state dir itself."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from .common import run
from .paths import Paths


def _mounts_under(roots: Sequence[Path]) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == str(r) or point.startswith(f"{r}/") for r in roots):
            found.append(point)
    # deepest first, so a parent is never unmounted before its children
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all(roots: Sequence[Path]) -> None:
    for _ in range(5):
        points = _mounts_under(roots)
        if not points:
            return
        for point in points:
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "-l", point], check=False)


def remove_cgroups() -> None:
    """Remove the (now empty) kubepods cgroup trees kubelet created in each hierarchy."""
    for root in Path("/sys/fs/cgroup").iterdir():
        tree = root / "kubepods"
        if not tree.is_dir():
            continue
        dirs = sorted((p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, tree]:
            with contextlib.suppress(OSError):
                d.rmdir()


def remove_container_log_links(paths: Paths) -> None:
    logs = Path("/var/log/containers")
    if not logs.is_dir():
        return
    for link in logs.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(str(paths.state)):
                link.unlink()
    with contextlib.suppress(OSError):
        logs.rmdir()  # kubelet created it; leave it only if something else uses it


def remove_state(paths: Paths) -> None:
    if not paths.state.exists():
        return
    try:
        shutil.rmtree(paths.state)
    except OSError:
        unmount_all([paths.state])
        shutil.rmtree(paths.state)
