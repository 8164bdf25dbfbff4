#!/usr/bin/env python3
"""Helm, built from its pinned Go module (gomod/helm) into the cache, for `helm lint` / `helm template`.

    PYTHONPATH=tests/e2e/cluster python tests/e2e/image/helm.py   # builds once (cold ≈ minutes), prints its path

No prebuilt binary is downloaded: the Go module proxy serves the source, `go build` makes the binary.
The cache key covers go.mod, go.sum and the Go version, so a new pin gets a fresh build.
Only stdlib and the launcher (tests/e2e/cluster/localcluster: the cache root, the Go version and build env; on
PYTHONPATH outside pytest), so CI can call it before the project is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from localcluster import cache_root, go_env, go_version

HERE = Path(__file__).resolve().parent
GOMOD = HERE / "gomod" / "helm"
HELM_VERSION = "v3.22.0"  # kept in step with gomod/helm/go.mod; build_helm() refuses a drift
BUILD_FORMAT = "2"  # bump when the build flags change, so the cached binary is rebuilt


class HelmBuildError(RuntimeError):
    pass


def build_key() -> str:
    go = go_version()
    if go is None:
        raise HelmBuildError("Go is needed to build helm (the pinned module gomod/helm); install Go first")
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        h.update((GOMOD / name).read_bytes())
    h.update(go.encode())
    h.update(BUILD_FORMAT.encode())
    return f"helm-{HELM_VERSION}-{h.hexdigest()[:12]}"


def helm_path() -> Path:
    return cache_root() / "helm" / build_key() / "helm"


def _version_flags(env: dict[str, str]) -> str:
    """What helm's Makefile stamps in: its version, and the Kubernetes version it assumes offline (`helm template`,
    `helm lint`, kubeVersion checks), derived from client-go like the Makefile does (v0.X -> 1.X)."""
    out = subprocess.run(["go", "list", "-m", "-f", "{{.Version}}", "k8s.io/client-go"], cwd=GOMOD, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    major, minor = out.removeprefix("v").split(".")[:2]
    k8s_major = str(int(major) + 1)
    flags = [f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"]
    for pkg in ("pkg/lint/rules", "pkg/chartutil"):
        flags += [f"-X helm.sh/helm/v3/{pkg}.k8sVersionMajor={k8s_major}",
                  f"-X helm.sh/helm/v3/{pkg}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def build_helm(force: bool = False) -> Path:
    """Return the cached helm binary, building it first if needed."""
    if f"helm.sh/helm/v3 {HELM_VERSION}" not in (GOMOD / "go.mod").read_text():
        raise HelmBuildError(f"gomod/helm/go.mod does not pin helm.sh/helm/v3 {HELM_VERSION}; update both together")
    out = helm_path()
    if out.is_file() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build into a private name and rename, so a concurrent or interrupted build never leaves half a binary.
    partial = out.with_name(f"helm.partial-{os.getpid()}")
    # GOTOOLCHAIN=local: never fetch another Go toolchain; CGO off: a static binary with no compiler deps.
    env = go_env()  # both set there
    cmd = ["go", "build", "-trimpath", "-mod=readonly", f"-ldflags=-s -w {_version_flags(env)}", "-o", str(partial),
           "helm.sh/helm/v3/cmd/helm"]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=GOMOD, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise HelmBuildError(f"go build of helm failed:\n{proc.stderr[-4000:]}")
    partial.replace(out)
    print(f"built helm {HELM_VERSION} in {time.monotonic() - start:.1f}s -> {out}", file=sys.stderr)
    return out


def find_helm() -> Path | None:
    """The cached pinned build if present, else FLEET_LATTICE_HELM; never a random helm on PATH,
    so every machine lints with the same version."""
    if helm_path().is_file():
        return helm_path()
    override = os.environ.get("FLEET_LATTICE_HELM")
    if override and shutil.which(override):
        return Path(shutil.which(override) or override)
    return None


def main() -> int:
    try:
        print(build_helm(force="--force" in sys.argv))
    except HelmBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
