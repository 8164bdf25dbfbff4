"""The seeds' own clients as real processes: the `nats` CLI (natscli, built from its Go module into the
cache) and node with nats.js (npm, installed into the cache). Commands are given as the seeds write them
(`nats pub fleet.install.ct-fac.request '{"v":"v622"}'`); the harness adds only who signs in where."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from localcluster import wait_for

# `nats sub` prints each message as `[#3] Received on "subject"`, then its headers, a blank line, its body.
_RECEIVED = re.compile(r'^\[#\d+\] Received on "([^"]+)"')
_HEADER = re.compile(r"^[\w-]+: ")
T = TypeVar("T")


@dataclass(frozen=True)
class CliResult:
    rc: int
    stdout: str
    stderr: str

    def ok(self) -> CliResult:
        """Itself if the command succeeded; otherwise an AssertionError that shows what it said."""
        assert self.rc == 0, f"rc={self.rc}\nstdout: {self.stdout.strip()}\nstderr: {self.stderr.strip()}"
        return self


@dataclass(frozen=True)
class SubMessage:
    subject: str
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class NatsSub:
    """A `nats sub` running in the background; every line it prints is kept, in order."""

    proc: subprocess.Popen[str]
    command: str  # as given, for failure messages
    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def messages(self) -> list[SubMessage]:
        """What it received: each message's subject and body (headers dropped)."""
        with self._lock:
            lines = list(self.lines)
        starts = [(i, match.group(1)) for i, line in enumerate(lines) if (match := _RECEIVED.match(line))]
        found = []
        for (start, subject), end in zip(starts, [*(i for i, _ in starts[1:]), len(lines)], strict=True):
            block = lines[start + 1:end]
            if "" in block and all(_HEADER.match(line) for line in block[:block.index("")]):
                block = block[block.index("") + 1:]
            found.append(SubMessage(subject, "\n".join(block).strip()))
        return found

    def _wait(self, found: Callable[[], T | None], timeout: float, what: str) -> T:
        def seen() -> T | None:
            result = found()
            if result is None and self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode})")
            return result

        try:
            return wait_for(seen, timeout, what, interval=0.1)
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- {self.command} printed ---\n{self.output()}") from None

    def wait_line(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        return self._wait(lambda: next((line for line in self.output().splitlines() if predicate(line)), None),
                          timeout, what)

    def wait_message(self, predicate: Callable[[SubMessage], bool], timeout: float, what: str) -> SubMessage:
        return self._wait(lambda: next((m for m in self.messages() if predicate(m)), None), timeout, what)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass(frozen=True)
class NatsCli:
    """The real `nats` CLI signed in as one identity: an NKey seed file (`--nkey`) or a natscli context
    (`--context`, a name under `config_home`/nats/context or a context file's path). `config_home` is its own
    XDG_CONFIG_HOME, so no context of the machine's user leaks into a test."""

    binary: Path
    config_home: Path
    server: str | None = None
    nkey: Path | None = None
    context: str | None = None

    def signed_in(self, server: str | None = None, nkey: Path | None = None, context: str | None = None) -> NatsCli:
        return replace(self, server=server, nkey=nkey, context=context)

    def argv(self, command: str) -> list[str]:
        """`command` as the seeds write it, `nats ...`, with this identity's connection flags."""
        words = shlex.split(command)
        assert words[:1] == ["nats"], f"not a nats command: {command!r}"
        connection = [*(["--server", self.server] if self.server else []),
                      *(["--nkey", str(self.nkey)] if self.nkey else []),
                      *(["--context", self.context] if self.context else [])]
        return [str(self.binary), *connection, *words[1:]]

    def _env(self) -> dict[str, str]:
        # No NATS_* from the environment: the identity is only what this object says.
        env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
        return {**env, "XDG_CONFIG_HOME": str(self.config_home), "NO_COLOR": "1"}

    def run(self, command: str, timeout: float = 30, input: str | None = None) -> CliResult:
        proc = subprocess.run(self.argv(command), capture_output=True, text=True, timeout=timeout, input=input,
                              env=self._env())
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    @contextmanager
    def sub(self, command: str) -> Iterator[NatsSub]:
        """`nats sub ...` in the background until the block ends; stdout and stderr as one stream of lines."""
        proc = subprocess.Popen(self.argv(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self._env())
        sub = NatsSub(proc, command)
        try:
            yield sub
        finally:
            sub.stop()


@dataclass(frozen=True)
class NodeRunner:
    """node with nats.js from the cache (`require('nats')` resolves through NODE_PATH, not the repo)."""

    node_modules: Path

    def run(self, script: Path, env: dict[str, str], timeout: float = 60) -> CliResult:
        full_env = {**os.environ, **env, "NODE_PATH": str(self.node_modules)}
        proc = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=timeout, env=full_env)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)
