"""Real nats-server processes for tests: locate the binary, check configs, run servers on free
loopback ports and wait for them by polling their monitoring endpoints (never by sleeping blind)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from localcluster import free_port as free_port  # its one home; the unit tests import it from here

DEADLINE_SECONDS = 15.0
_POLL_SECONDS = 0.05


def nats_server_binary() -> Path:
    found = shutil.which("nats-server") or shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError("nats-server not found on PATH nor next to the Python interpreter")
    return Path(found)


def check_config(binary: Path, path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`nats-server -t -c path`: parse and validate the config as the server would at startup."""
    return subprocess.run(
        [str(binary), "-t", "-c", str(path)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def make_tls_material(directory: Path) -> Path:
    """A CA and a CA-signed server certificate for localhost/127.0.0.1, as a kubernetes.io/tls Secret holds them."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fleet-test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "tls.key", "-out", "tls.csr")
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
            "-extfile", "san.ext", "-out", "tls.crt")  # fmt: skip
    return directory


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


async def eventually(what: str, probe: Callable[[], Awaitable[bool]], deadline: float = DEADLINE_SECONDS) -> None:
    """Poll `probe` until it is true; fail with `what` once the deadline passes."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not await probe():
        if loop.time() > end:
            raise TimeoutError(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(_POLL_SECONDS)


class NatsProcess:
    """A running nats-server and its monitoring endpoint."""

    def __init__(self, process: asyncio.subprocess.Process, monitoring_port: int, log: Path) -> None:
        self.process = process
        self.monitoring_port = monitoring_port
        self.log = log

    async def monitor(self, endpoint: str) -> Any:
        """GET a monitoring endpoint (e.g. "leafz?subs=1") as JSON."""
        return await asyncio.to_thread(_get_json, f"http://127.0.0.1:{self.monitoring_port}/{endpoint}")

    async def healthy(self) -> bool:
        if self.process.returncode is not None:
            raise RuntimeError(f"nats-server exited with {self.process.returncode}:\n{self.log.read_text()}")
        try:
            return (await self.monitor("healthz")).get("status") == "ok"
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def reload(self) -> None:
        self.process.send_signal(signal.SIGHUP)


@asynccontextmanager
async def running_server(
    binary: Path, config: Path, monitoring_port: int, env: dict[str, str] | None = None
) -> AsyncIterator[NatsProcess]:
    """Start nats-server with `config`, wait until /healthz is ok, and stop it afterwards."""
    log = config.with_suffix(".log")
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            str(binary), "-c", str(config), env={**os.environ, **(env or {})}, stdout=out, stderr=out
        )
    server = NatsProcess(process, monitoring_port, log)
    try:
        await eventually(f"{config.name} to be healthy", server.healthy)
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def leaf_interest(server: NatsProcess, subject: str) -> None:
    """Wait until `server` has `subject` in its one leafnode connection's subscriptions."""

    async def present() -> bool:
        return subject in (await server.monitor("leafz?subs=1"))["leafs"][0].get("subscriptions_list", [])

    await eventually(f"interest in {subject} to cross the leafnode", present)
