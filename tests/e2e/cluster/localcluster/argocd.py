"""Argo CD from the cache (builds.build_argocd): how its multi-call binary runs a component, and the offline
health check `argocd admin settings resource-overrides health`, which runs an argocd-cm's health Lua exactly as
the application controller does."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .common import ClusterError
from .paths import Paths


def argocd_env(component: str = "argocd") -> dict[str, str]:
    """The environment that makes the one binary act as `component` (argocd-repo-server, ...)."""
    return {**os.environ, "ARGOCD_BINARY_NAME": component}


def admin_health(obj: dict[str, Any], argocd_cm: dict[str, Any], argocd: Path | None = None) -> tuple[str, str]:
    """(status, message) of obj as Argo CD assesses it with the health customizations of argocd_cm (a ConfigMap)."""
    argocd = argocd or Paths.from_env().argocd()
    with tempfile.TemporaryDirectory(prefix="argocd-health-") as tmp:
        obj_path, cm_path = Path(tmp, "obj.json"), Path(tmp, "argocd-cm.json")
        obj_path.write_text(json.dumps(obj))  # JSON is YAML: no YAML library needed here
        cm_path.write_text(json.dumps(argocd_cm))
        proc = subprocess.run([str(argocd), "admin", "settings", "resource-overrides", "health", str(obj_path),
                               "--argocd-cm-path", str(cm_path)], capture_output=True, text=True, env=argocd_env())
    fields = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    if proc.returncode != 0 or "STATUS" not in fields:
        raise ClusterError(f"argocd admin health failed ({proc.returncode}): {proc.stdout}{proc.stderr[-2000:]}")
    return fields["STATUS"], fields.get("MESSAGE", "")
