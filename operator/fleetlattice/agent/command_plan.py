"""The `command` plan: the silo's own install script does the work, the agent relays what it says.

Contract with the script:
- stdin: the request JSON (install request, or scrub request for a scrub);
- env: FLEET_SILO, FLEET_VERSION, FLEET_REQUEST_ID, and FLEET_SCRUB=1 for a scrub (FLEET_VERSION is
  then the installed version, empty if none is known);
- each stdout line that is a JSON object with "step" becomes a progress report
  ({"step", "index", "total", "message"}); any other line becomes a progress message for the current
  step; if the last JSON line has "result": {...}, it is merged into the `done` report (pods, health);
- exit 0: done. Exit 3: failed, not retryable (the script knows another attempt fails the same way).
  Any other exit: failed, retryable. The error is the tail of stderr.
The script must be idempotent: a request redelivered after an agent crash runs it again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from fleetlattice.agent.plan import ProgressSink, Step, StepFailed, StepOutput
from fleetlattice.api.messages import MAX_MESSAGE_BYTES, InstallRequest, ScrubRequest

log = logging.getLogger(__name__)

EXIT_NOT_RETRYABLE = 3
STEP = "command"
_STDERR_TAIL_LINES = 20
# A report must fit in one bus message with room for its other fields.
_MESSAGE_CHARS = 4096

LineHandler = Callable[[str], Awaitable[None]]


class CommandPlan:
    def __init__(self, command: str, silo: str) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("the command plan needs a command")
        self.silo = silo

    def _env(self, request_id: str, version: str, scrub: bool) -> dict[str, str]:
        env = {**os.environ, "FLEET_SILO": self.silo, "FLEET_VERSION": version, "FLEET_REQUEST_ID": request_id}
        if scrub:
            env["FLEET_SCRUB"] = "1"
        return env

    def steps(self, request: InstallRequest) -> list[Step]:
        async def run(progress: ProgressSink) -> StepOutput:
            relay = _Relay(progress)
            env = self._env(request.request_id, request.version, scrub=False)
            code, stderr = await _run(self.argv, request.encode(), env, relay.line)
            if code != 0:
                raise StepFailed(_error(code, stderr), retryable=code != EXIT_NOT_RETRYABLE)
            return StepOutput(result=relay.result)

        return [Step(STEP, run)]

    async def scrub(self, request: ScrubRequest, installed: InstallRequest | None) -> None:
        async def log_line(line: str) -> None:
            log.info("scrub %s: %s", request.request_id, line)

        version = installed.version if installed else ""
        env = self._env(request.request_id, version, scrub=True)
        code, stderr = await _run(self.argv, request.encode(), env, log_line)
        if code != 0:
            raise StepFailed(_error(code, stderr), retryable=code != EXIT_NOT_RETRYABLE)


class _Relay:
    """Turns the script's stdout into progress reports, remembering its current step and last result."""

    def __init__(self, progress: ProgressSink) -> None:
        self._progress = progress
        self.step, self.index, self.total = STEP, 0, 0
        self.result: dict[str, Any] = {}

    async def line(self, line: str) -> None:
        parsed = _json_object(line)
        if parsed is None:
            await self._progress(self.step, self.index, self.total, line[:_MESSAGE_CHARS])
            return
        # Only the last JSON line's result counts, so an earlier one is forgotten.
        result = parsed.get("result")
        self.result = result if isinstance(result, dict) else {}
        if "step" in parsed:
            self.step = str(parsed["step"])
            self.index = _count(parsed.get("index"), self.index)
            self.total = _count(parsed.get("total"), self.total)
            await self._progress(self.step, self.index, self.total, str(parsed.get("message", ""))[:_MESSAGE_CHARS])


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _error(code: int, stderr: deque[str]) -> str:
    tail = "\n".join(stderr).strip()
    return (tail or f"exited with code {code}")[-_MESSAGE_CHARS:]


async def _run(argv: list[str], stdin: bytes, env: dict[str, str], on_line: LineHandler) -> tuple[int, deque[str]]:
    """Run the script to its end; returns its exit code and stderr tail. Cancelling it (deadline,
    shutdown) kills the script's whole process group: scripts start kubectl, helm, ... of their own."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
        limit=MAX_MESSAGE_BYTES,
    )
    stderr: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
    try:
        # PIPE was asked for all three, so they exist; the asserts tell the type checker.
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        # Fed while the output is read: a script writing before it reads its stdin must not deadlock.
        await asyncio.gather(
            _feed(process.stdin, stdin), _lines(process.stdout, on_line), _lines(process.stderr, _append_to(stderr))
        )
        return await process.wait(), stderr
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a script need not read its stdin
        stream.write(data)
        await stream.drain()
    stream.close()


def _append_to(lines: deque[str]) -> LineHandler:
    async def append(line: str) -> None:
        lines.append(line)

    return append


async def _lines(stream: asyncio.StreamReader, on_line: LineHandler) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line longer than the limit: skip it, it could never be one report anyway
            log.warning("script printed a line longer than %d bytes; skipped", MAX_MESSAGE_BYTES)
            continue
        if not raw:
            return
        line = raw.decode(errors="replace").rstrip("\r\n")
        if line:
            await on_line(line)
