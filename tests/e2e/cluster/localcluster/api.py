"""Talking to the running cluster: the apiserver over HTTPS with the admin certificate, and the pinned kubectl."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from typing import Any

from .common import run
from .network import APISERVER_PORT, NODE_IP, NODE_NAME
from .paths import Paths


def _ssl_context(paths: Paths) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(paths.pki / "ca.crt"))
    ctx.load_cert_chain(str(paths.pki / "admin.crt"), str(paths.pki / "admin.key"))
    return ctx


def api_get(paths: Paths, path: str, timeout: float = 5.0) -> Any:
    url = f"https://{NODE_IP}:{APISERVER_PORT}{path}"
    with urllib.request.urlopen(url, context=_ssl_context(paths), timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body.startswith(b"{") else body.decode()


def api_ok(paths: Paths, path: str) -> bool:
    try:
        return api_get(paths, path, timeout=3) == "ok"
    except (OSError, urllib.error.URLError, ssl.SSLError, ValueError):
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def kubectl(
    paths: Paths, *args: str, input_text: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = [str(paths.kubectl()), f"--kubeconfig={paths.kubeconfig}", *args]
    return run(cmd, check=check, input_text=input_text)


def node_ready(paths: Paths) -> bool:
    node = api_get(paths, f"/api/v1/nodes/{NODE_NAME}")
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


def coredns_ready(paths: Paths) -> bool:
    dep = api_get(paths, "/apis/apps/v1/namespaces/kube-system/deployments/coredns")
    return dep.get("status", {}).get("readyReplicas", 0) >= 1
