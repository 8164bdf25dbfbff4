"""Operator start-up and shutdown: metrics, kopf's login, closing NATS connections."""

from __future__ import annotations

import kopf
from kubernetes import client

from fleetlattice.clients import metrics
from fleetlattice.handlers.common import runtime


@kopf.on.startup()
async def startup(memo: kopf.Memo, logger: kopf.Logger, **_: object) -> None:
    rt = runtime(memo)
    if rt.settings.metrics_port:
        metrics.serve(rt.settings.metrics_port)
    logger.info("fleet-lattice operator started (hub address mode: %s)", rt.connections.mode)


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
    await runtime(memo).connections.close_all()
