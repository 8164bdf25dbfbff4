"""kubectl access for the e2e tests: the pinned kubectl, one kubeconfig, clear failures."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localcluster import wait_for


class KubectlError(AssertionError):
    """A kubectl call failed; carries the command and its stderr."""


class Kubectl:
    """Runs the kubectl built with the cluster (never a pre-installed one) against one kubeconfig."""

    def __init__(self, binary: Path, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
        return proc

    def json(self, *args: str) -> Any:
        """``kubectl <args> -o json``, parsed."""
        return json.loads(self(*args, "-o", "json").stdout)

    def apply(self, *manifests: dict[str, Any], namespace: str | None = None) -> None:
        """Server-side apply of manifests given as dicts."""
        ns = [f"--namespace={namespace}"] if namespace else []
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)})
        self("apply", "--server-side", "--field-manager=e2e", *ns, "-f", "-", input=body)


def _namespace_name(label: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:40].strip("-")
    return f"e2e-{slug}-{uuid.uuid4().hex[:6]}"


def create_namespace(kubectl: Kubectl, label: str) -> str:
    name = _namespace_name(label)
    kubectl("create", "namespace", name)
    # Pods are rejected until the namespace's default ServiceAccount exists.
    wait_for(
        lambda: kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        60,
        f"default ServiceAccount in {name}",
    )
    return name


def delete_namespace(kubectl: Kubectl, name: str) -> None:
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@contextlib.contextmanager
def scratch_namespace(kubectl: Kubectl, label: str) -> Iterator[str]:
    """A namespace of its own, deleted on the way out also when the setup inside failed: a fixture whose wait
    timed out left its hub and twenty leaves running through the rest of the session, slowing every later test."""
    name = create_namespace(kubectl, label)
    try:
        yield name
    finally:
        delete_namespace(kubectl, name)
