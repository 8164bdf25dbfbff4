"""Operator start-up and shutdown: metrics, kopf's login, closing NATS connections."""

from __future__ import annotations

import aiohttp
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


# Connections kopf keeps to the API server: its watches (one per kind, held for minutes) plus the patches and
# Events in flight. kopf's own session has no limit, so a thousand objects patched at once opened a thousand
# TLS connections: at a 1,000-silo cold start TLS handshakes took a fifth of the event loop (py-spy). With a
# bounded pool, requests queue for a kept-alive connection instead.
KOPF_CONNECTIONS = 48
KOPF_KEEPALIVE_SECONDS = 120


@kopf.on.login()
async def login(**_: object) -> kopf.AiohttpSession:
    """kopf talks to the API server with the same credentials as our client, loaded once by
    kube.load_config (in-cluster service account, or the --kubeconfig given on the command line), through a
    session with a bounded, kept-alive connection pool. kopf closes it when it logs in again (a 401)."""
    info = _connection_info()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=KOPF_CONNECTIONS, keepalive_timeout=KOPF_KEEPALIVE_SECONDS,
                                       ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
    )
    return kopf.AiohttpSession(server=info.server, aiohttp_session=session)


def _connection_info() -> kopf.ConnectionInfo:
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
