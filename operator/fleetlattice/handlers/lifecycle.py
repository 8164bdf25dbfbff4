"""Operator start-up and shutdown: settings, the shared context, closing NATS connections."""

from __future__ import annotations

import logging
import os

import kopf
from kubernetes import client

from .. import metrics
from ..context import Context, Settings
from ..install_bus import InstallStore
from ..kube import Kube
from ..natsconn import HubConnections

PREFIX = "fleet.lattice.dev"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: object) -> None:
    # Our own annotation prefix and finalizer name, not kopf's defaults.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    port = int(os.environ.get("FLEETLATTICE_METRICS_PORT", "9090"))
    if port:
        metrics.serve(port)
    mode = os.environ.get("FLEETLATTICE_HUB_ADDRESS", "auto")
    kube = Kube()
    hubs = HubConnections(kube, mode)  # type: ignore[arg-type]
    memo["ctx"] = Context(kube=kube, hubs=hubs, installs=InstallStore(kube), settings=Settings())
    logger.info("fleet-lattice operator started (hub address mode: %s)", memo["ctx"].hubs.mode)


@kopf.on.login()
def login(**_: object) -> kopf.ConnectionInfo:
    """kopf talks to the API server with the same credentials as our client, loaded once by
    kube.load_config (in-cluster service account, or the --kubeconfig given on the command line)."""
    cfg = client.Configuration.get_default_copy()
    if cfg.refresh_api_key_hook:  # in-cluster: the projected token rotates
        cfg.refresh_api_key_hook(cfg)
    token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    scheme, _, value = (token or "").partition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        scheme=scheme or None,
        token=value or None,
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: object) -> None:
    ctx: Context | None = memo.get("ctx")
    if ctx is not None:
        await ctx.hubs.close_all()
