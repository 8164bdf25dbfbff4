"""The cluster's PKI (openssl, EC P-256) and kubeconfigs with embedded credentials."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .common import ClusterError
from .network import APISERVER_PORT, KUBERNETES_SVC_IP, NODE_IP, NODE_NAME
from .paths import Paths


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
