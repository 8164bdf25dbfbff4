"""`fleetlattice run`: the kopf operator, in or out of cluster."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import os
import socket

import kopf

from fleetlattice.clients.hub_connections import AddressMode
from fleetlattice.clients.kube import load_config
from fleetlattice.handlers.runtime import Runtime, Settings

HANDLER_MODULES = ("lifecycle", "hub", "leaf", "stream", "install", "user")
PREFIX = "fleet.lattice.dev"


def peering_priority(value: str) -> int:
    """An integer, or `auto`: a stable number from this pod's name, so each replica of an HA
    Deployment gets its own priority (kopf pauses every replica when two share the top one)."""
    if value != "auto":
        return int(value)
    name = os.environ.get("FLEETLATTICE_POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % (2**31 - 1) + 1


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Our own annotation prefix and finalizer name, not kopf's defaults.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # kopf's own "Handler ... succeeded" / "Creation is processed" would be two Events (API writes) per object
    # change, repeating the Events our handlers post for what happened; its warnings and errors stay Events.
    # (kopf.info() is held to this level too: our Normal Events go through kopf.event().)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # After its own patch kopf waits this long for the watch to deliver the patched version before it handles
    # the object from what it has. At 5 s (kopf's default) a watch lagging under a 1,000-silo cold start
    # handed it versions from before its patch, and every SiloInstall's creation was handled 3 to 4 times.
    settings.persistence.consistency_timeout = 30
    settings.networking.request_timeout = 60
    return settings


class RoutineSuccess(logging.Filter):
    """Drops kopf's "succeeded" line for timers and watch-event handlers: at a thousand silos the 5 s status
    timers alone wrote 500 such lines a second, which cost more CPU than the timers. Change handlers' lines
    (the audit trail) and every failure stay."""

    ROUTINE = ("Timer '", "Handler 'leaf_deleted'", "Handler 'install_seen'", "Handler 'user_deleted'")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        return not (record.levelno == logging.INFO and message.endswith(" succeeded.")
                    and message.startswith(self.ROUTINE))


def configure_logging() -> None:
    """Embedded kopf does not set up logging; its "Handler ... succeeded" lines are the audit trail. Each
    line carries its time and, for an object's handlers, the object's namespace/name."""
    kopf.configure(verbose=os.environ.get("FLEETLATTICE_VERBOSE") == "1", log_format=kopf.LogFormat.FULL,
                   log_prefix=True)
    logging.getLogger("kopf.objects").addFilter(RoutineSuccess())


def run(*, namespaces: list[str], kubeconfig: str | None, address_mode: AddressMode, peering: str | None,
        liveness: str | None, metrics_port: int, priority: str = "0") -> None:
    if kubeconfig:
        # kopf's own login reads KUBECONFIG; the handlers' client loads it explicitly.
        os.environ["KUBECONFIG"] = kubeconfig
    load_config(kubeconfig)
    configure_logging()
    for module in HANDLER_MODULES:
        importlib.import_module(f"fleetlattice.handlers.{module}")
    rt = Runtime.build(Settings(hub_address=address_mode, metrics_port=metrics_port))
    asyncio.run(kopf.operator(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering,
        priority=peering_priority(priority),
        liveness_endpoint=liveness,
        settings=operator_settings(),
        memo=kopf.Memo(runtime=rt),
    ))
