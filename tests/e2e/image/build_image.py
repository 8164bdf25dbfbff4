#!/usr/bin/env python3
"""Build the operator image from the top-level Dockerfile without Docker or any registry.

    PYTHONPATH=tests/e2e/cluster python tests/e2e/image/build_image.py   # prints the docker-archive's path

1. apt-installs buildah and debootstrap when missing (Debian packages).
2. Makes the base images with debootstrap (Debian bookworm + python3), cached as tarballs keyed by a hash
   of their package lists, and imports them into a private buildah store under the cache.
3. `buildah bud` the Dockerfile with BASE_IMAGE / BUILDER_IMAGE pointing at those bases; pip reaches PyPI
   over the host network. Tagged localhost/fleet-lattice/operator:dev.
4. Writes a docker-archive for the launcher's localcluster.import_image_archive().

Storage driver vfs and isolation chroot: they need neither overlay mounts nor user namespaces, so the build
works as root in a plain VM or container. Only stdlib and the launcher (its cache root; tests/e2e/cluster on
PYTHONPATH outside pytest), so CI can run it before the project is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from base_image import BASES, BaseSpec, ensure_base_tarball
from localcluster import cache_root

REPO = Path(__file__).resolve().parents[3]
IMAGE = "localhost/fleet-lattice/operator:dev"


def log(msg: str) -> None:
    print(f"[build_image] {msg}", file=sys.stderr, flush=True)


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("buildah", "buildah"), ("debootstrap", "debootstrap")) if not shutil.which(tool)]
    if not missing:
        return
    log(f"installing {' '.join(missing)} from Debian")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, "runc"]
    subprocess.run(install, check=True, env=env)


class Buildah:
    """buildah with a store of our own, so nothing here touches (or depends on) the host's image store."""

    def __init__(self, root: Path) -> None:
        # vfs works everywhere but copies every layer in full; FLEET_LATTICE_BUILDAH_DRIVER=overlay is faster where
        # the kernel and the cache's filesystem allow it (a different driver means a different store).
        driver = os.environ.get("FLEET_LATTICE_BUILDAH_DRIVER", "vfs")
        store = root if driver == "vfs" else root / driver
        self.flags = ["--root", str(store / "storage"), "--runroot", str(store / "run"), "--storage-driver", driver]

    def run(self, *args: str, capture: bool = False) -> str:
        cmd = ["buildah", *self.flags, *args]
        proc = subprocess.run(cmd, text=True, capture_output=capture)
        if proc.returncode != 0:
            detail = (proc.stderr or "")[-4000:] if capture else ""
            raise SystemExit(f"buildah {' '.join(args[:2])} failed ({proc.returncode}) {detail}")
        return proc.stdout.strip() if capture else ""

    def has_image(self, ref: str) -> bool:
        cmd = ["buildah", *self.flags, "inspect", "--type", "image", ref]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def import_base(buildah: Buildah, spec: BaseSpec, tarball: Path) -> str:
    """The base tarball as a one-layer image; skipped when this exact tarball is already imported."""
    ref = spec.image_ref()
    if buildah.has_image(ref):
        return ref
    container = buildah.run("from", "--pull-never", "scratch", capture=True)
    try:
        buildah.run("add", container, str(tarball), "/")
        buildah.run("config", "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
        buildah.run("commit", "--rm", container, ref)
    except SystemExit:
        subprocess.run(["buildah", *buildah.flags, "rm", container], capture_output=True)
        raise
    return ref


def host_ca_bundle() -> Path | None:
    """The CA bundle this machine's pip trusts. Where PyPI is reached through a TLS-intercepting proxy, only the
    host's bundle knows its CA; the Dockerfile takes it as build secret `pip-ca` (in no layer)."""
    system = "/etc/ssl/certs/ca-certificates.crt"
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), system):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build(*, layers: bool = True) -> Path:
    ensure_tools()
    cache = cache_root()
    buildah = Buildah(cache / "buildah")
    refs = {}
    for spec in BASES:
        started = time.monotonic()
        tarball = ensure_base_tarball(spec, cache / "image-base")
        refs[spec.name] = import_base(buildah, spec, tarball)
        log(f"base {spec.name}: {refs[spec.name]} ready in {time.monotonic() - started:.1f}s")

    started = time.monotonic()
    ca = host_ca_bundle()
    buildah.run(
        "bud", "--isolation", "chroot", "--network", "host", "--pull-never",
        f"--layers={'true' if layers else 'false'}",
        *(["--secret", f"id=pip-ca,src={ca}"] if ca else []),
        "--build-arg", f"BASE_IMAGE={refs['runtime']}",
        "--build-arg", f"BUILDER_IMAGE={refs['builder']}",
        "-f", str(REPO / "Dockerfile"), "-t", IMAGE, str(REPO),
    )
    log(f"image {IMAGE} built in {time.monotonic() - started:.1f}s")

    out = cache / "images" / "fleet-lattice-operator-dev.tar"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    # docker-archive keeps the repo:tag, which `ctr images import` uses as the image name.
    buildah.run("push", IMAGE, f"docker-archive:{partial}:{IMAGE}")
    partial.replace(out)
    log(f"archive {out} ({out.stat().st_size // 2**20} MiB)")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-layers", action="store_true", help="do not reuse cached build layers")
    args = parser.parse_args()
    started = time.monotonic()
    print(build(layers=not args.no_layers))
    log(f"done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
