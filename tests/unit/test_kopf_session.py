"""kopf's session to the API server: the operator's credentials, and a bounded pool of kept-alive connections.

kopf's own session has no limit: at a 1,000-silo cold start it held about 2,100 TLS connections at once, 555 MB
of the operator's memory (memray: asyncio's SSL transport buffers) and a fifth of its event loop in handshakes
(py-spy)."""

from __future__ import annotations

from collections.abc import Iterator

import kopf
import pytest
from kubernetes import client

from fleetlattice.handlers.lifecycle import KOPF_CONNECTIONS, login


@pytest.fixture
def kube_config() -> Iterator[None]:
    before = client.Configuration.get_default_copy()
    cfg = client.Configuration()
    cfg.host = "https://127.0.0.1:6443"
    cfg.api_key = {"authorization": "Bearer the-token"}
    cfg.verify_ssl = False
    client.Configuration.set_default(cfg)
    yield
    client.Configuration.set_default(before)


async def test_kopf_gets_the_operators_credentials_through_a_bounded_pool(kube_config: None) -> None:
    context = await login()
    assert isinstance(context, kopf.AiohttpSession)
    session = context.aiohttp_session
    try:
        assert context.server == "https://127.0.0.1:6443"
        assert session.headers["Authorization"] == "Bearer the-token"
        assert 0 < session.connector.limit == KOPF_CONNECTIONS  # type: ignore[union-attr]
    finally:
        await session.close()

