"""`fleetlattice status` and `fleetlattice install`: the fleet for humans, from the custom resources."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from fleetlattice.api.siloinstall import FINAL_PHASES
from fleetlattice.clients.kube import Kube
from fleetlattice.logic.times import parse_time

EXIT_CODES = {"Succeeded": 0, "Failed": 2, "TimedOut": 3}


class CliError(Exception):
    """A problem the user can fix; the message says how."""


async def _list(kube: Kube, kind: str, namespace: str) -> list[dict[str, Any]]:
    try:
        return await kube.list(kind, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise CliError("the fleet.lattice.dev CRDs are not installed: "
                           "kubectl apply --server-side -f crds/") from exc
        raise CliError(f"the API server refused: {exc.status} {exc.reason}") from exc
    except (HTTPError, OSError) as exc:
        raise CliError(f"cannot reach the cluster ({exc}); check KUBECONFIG / --kubeconfig") from exc


def _ago(value: str | None, now: datetime) -> str:
    when = parse_time(value)
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def status_rows(leaves: list[dict[str, Any]], installs: list[dict[str, Any]], now: datetime) -> list[list[str]]:
    """One row per silo: connected, last heartbeat, current version, last install's phase."""
    latest: dict[str, dict[str, Any]] = {}
    for inst in installs:
        silo = inst["spec"]["silo"]
        if silo not in latest or inst["metadata"]["creationTimestamp"] > latest[silo]["metadata"]["creationTimestamp"]:
            latest[silo] = inst
    rows = []
    for leaf in sorted(leaves, key=lambda leaf: leaf["spec"]["silo"]):
        silo, status = leaf["spec"]["silo"], leaf.get("status") or {}
        inst = latest.get(silo)
        inst_status = (inst or {}).get("status") or {}
        version = status.get("installedVersion") or ((inst_status.get("result") or {}).get("version") or "-")
        last = f"{inst['metadata']['name']} {inst_status.get('phase', 'Pending')}" if inst else "-"
        rows.append([silo, "yes" if status.get("connected") else "no", _ago(status.get("lastHeartbeat"), now),
                     version, last])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    return "\n".join("   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
                     for row in [header, *rows])


async def status(kube: Kube, namespace: str) -> str:
    leaves = await _list(kube, "SiloLeaf", namespace)
    installs = await _list(kube, "SiloInstall", namespace)
    if not leaves:
        return f"no silos in namespace {namespace} (kubectl get siloleaves -n {namespace})"
    return table(["SILO", "CONNECTED", "LAST HEARTBEAT", "VERSION", "LAST INSTALL"],
                 status_rows(leaves, installs, datetime.now(UTC)))


def progress_bar(status: dict[str, Any], width: int = 30) -> str:
    progress = status.get("progress") or {}
    percent = 100 if status.get("phase") == "Succeeded" else int(progress.get("percent") or 0)
    filled = width * percent // 100
    step = progress.get("step", "")
    return f"[{'#' * filled}{'.' * (width - filled)}] {percent:3d}% {status.get('phase', 'Pending'):<10} {step}"


async def install(kube: Kube, namespace: str, silo: str, version: str, params: dict[str, str], wait: bool,
                  attempt_timeout: str) -> int:
    leaves = await _list(kube, "SiloLeaf", namespace)
    if not any(leaf["spec"]["silo"] == silo for leaf in leaves):
        known = ", ".join(sorted(leaf["spec"]["silo"] for leaf in leaves)) or "none"
        raise CliError(f"unknown silo {silo!r} in namespace {namespace} (known: {known})")
    name = f"{silo}-{version}".lower().replace(".", "-").replace("_", "-")[:63].rstrip("-")
    await kube.apply({"apiVersion": "fleet.lattice.dev/v1alpha1", "kind": "SiloInstall",
                      "metadata": {"name": name, "namespace": namespace},
                      "spec": {"silo": silo, "version": version, "params": params, "timeout": attempt_timeout}})
    print(f"siloinstall/{name} applied")
    if not wait:
        return 0
    last = ""
    while True:
        body = await kube.get("SiloInstall", namespace, name) or {}
        state = body.get("status") or {}
        line = progress_bar(state)
        if line != last:
            print(("\r" if sys.stdout.isatty() else "") + line, end="" if sys.stdout.isatty() else "\n", flush=True)
            last = line
        phase = state.get("phase", "Pending")
        if phase in FINAL_PHASES and state.get("observedGeneration") == body["metadata"]["generation"]:
            print()
            error = (state.get("lastError") or {}).get("error")
            if error and phase != "Succeeded":
                print(f"{phase}: {error}", file=sys.stderr)
            return EXIT_CODES[phase]
        await asyncio.sleep(1)  # poll interval; the install's own timeout bounds the wait
