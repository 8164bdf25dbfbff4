"""Minimal Debian bookworm root filesystems with python3, made by debootstrap and cached as tarballs.

No registry is reachable, so the image's base is made here from Debian's own packages. Two bases:
`runtime` (python3 + CA certificates: what the operator needs) and `builder` (runtime + python3-venv, to
create the venv the Dockerfile's builder stage fills from PyPI). Both come from the same mirror snapshot,
so the venv's /usr/bin/python3 is the same interpreter in both stages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("FLEET_LATTICE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
RUNTIME_PACKAGES = ("python3", "ca-certificates", "tzdata")
FORMAT_VERSION = "1"  # bump when the way a rootfs is made or trimmed changes


@dataclass(frozen=True)
class BaseSpec:
    name: str
    packages: tuple[str, ...]

    def key(self) -> str:
        """Changes with anything that changes the rootfs: suite, mirror, packages, debootstrap, arch."""
        h = hashlib.sha256()
        for part in (SUITE, MIRROR, FORMAT_VERSION, _debootstrap_version(), _arch(), *sorted(self.packages)):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:16]

    def image_ref(self) -> str:
        return f"localhost/fleet-lattice/debian-python-{self.name}:{SUITE}-{self.key()}"


BASES = (
    BaseSpec("runtime", RUNTIME_PACKAGES),
    BaseSpec("builder", (*RUNTIME_PACKAGES, "python3-venv")),
)


def _debootstrap_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "debootstrap"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def _trim(root: Path) -> None:
    """Drop what an image never uses: apt lists and caches, docs, man pages, logs."""
    for rel in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
                "var/log", "usr/share/locale"):
        target = root / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()


def ensure_base_tarball(spec: BaseSpec, cache_dir: Path) -> Path:
    out = cache_dir / f"debian-{SUITE}-{spec.name}-{spec.key()}.tar"
    if out.is_file():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"[base_image] debootstrap {SUITE} {spec.name}: {', '.join(spec.packages)}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f"rootfs-{spec.name}-") as tmp:
        root = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(spec.packages)}", SUITE, str(root), MIRROR]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            log = root / "debootstrap" / "debootstrap.log"
            detail = log.read_text()[-3000:] if log.is_file() else proc.stderr[-3000:]
            raise SystemExit(f"debootstrap failed:\n{detail}")
        _trim(root)
        # The package versions in the image, for the record (and for whoever asks "which python is this").
        versions = subprocess.run(["chroot", str(root), "dpkg-query", "-W"], capture_output=True, text=True)
        (root / "etc" / "fleet-lattice-base-packages").write_text(versions.stdout)
        partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.replace(out)
    return out
