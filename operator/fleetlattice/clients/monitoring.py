"""Reads a nats-server's HTTP monitoring endpoints (/healthz, /varz, /leafz, /jsz)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from fleetlattice.logic.hub_status import ServerSnapshot

TIMEOUT = aiohttp.ClientTimeout(total=3)


async def _get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url) as response:
        return response.status, await response.json(content_type=None)


async def scrape(pod: str, ip: str, port: int, session: aiohttp.ClientSession) -> ServerSnapshot:
    base = f"http://{ip}:{port}"
    snap = ServerSnapshot(pod)
    try:
        (health, _), (_, snap.varz), (_, snap.leafz), (_, snap.jsz) = await asyncio.gather(
            _get_json(session, f"{base}/healthz"),
            _get_json(session, f"{base}/varz"),
            _get_json(session, f"{base}/leafz"),
            _get_json(session, f"{base}/jsz"),
        )
        snap.healthy = health == 200
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        snap.error = f"{type(exc).__name__}: {exc}"
    return snap


async def scrape_all(targets: list[tuple[str, str]], port: int) -> list[ServerSnapshot]:
    """targets: (pod name, pod IP)."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        return list(await asyncio.gather(*(scrape(pod, ip, port, session) for pod, ip in targets)))
