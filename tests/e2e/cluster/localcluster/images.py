"""OCI images: one-layer archives written by Python (deterministic), and importing archives into the node."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .common import ClusterError
from .paths import Paths
from .pins import IMAGES


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
        # The launcher's old file name: kept, since it is in every image's config and so in its digest.
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


def import_images(paths: Paths) -> None:
    archives = [paths.images_dir / f"{spec.name}.tar" for spec in IMAGES]
    with ThreadPoolExecutor(max_workers=len(archives)) as pool:
        list(pool.map(lambda archive: import_image_archive(archive, paths), archives))
