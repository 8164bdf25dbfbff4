"""The chart's Argo CD health script, run with lupa on objects read live from the cluster."""

from __future__ import annotations

from typing import Any

from lupa import lua51

from fleet import REPO

SCRIPT = (REPO / "charts" / "fleet-lattice" / "argocd" / "health.lua").read_text()


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return result["status"], result["message"]
