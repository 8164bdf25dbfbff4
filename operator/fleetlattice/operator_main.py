"""`fleetlattice run`: the kopf operator, in or out of cluster."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import socket

import kopf

from .kube import load_config

HANDLER_MODULES = ("lifecycle", "hub", "leaf", "stream", "install")


def peering_priority(value: str) -> int:
    """An integer, or `auto`: a stable number from this pod's name, so each replica of an HA
    Deployment gets its own priority (kopf pauses every replica when two share the top one)."""
    if value != "auto":
        return int(value)
    name = os.environ.get("FLEETLATTICE_POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % (2**31 - 1) + 1


def run(*, namespaces: list[str], kubeconfig: str | None, address_mode: str, peering: str | None,
        liveness: str | None, metrics_port: int, priority: str = "0") -> None:
    if kubeconfig:
        # kopf's own login reads KUBECONFIG; the handlers' client loads it explicitly.
        os.environ["KUBECONFIG"] = kubeconfig
    os.environ["FLEETLATTICE_HUB_ADDRESS"] = address_mode
    os.environ["FLEETLATTICE_METRICS_PORT"] = str(metrics_port)
    load_config(kubeconfig)
    # Embedded kopf does not set up logging; its "Handler ... succeeded" lines are the audit trail.
    kopf.configure(verbose=os.environ.get("FLEETLATTICE_VERBOSE") == "1", log_format=kopf.LogFormat.PLAIN)
    for module in HANDLER_MODULES:
        importlib.import_module(f"fleetlattice.handlers.{module}")
    asyncio.run(kopf.operator(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering,
        priority=peering_priority(priority),
        liveness_endpoint=liveness,
    ))
