"""The agent's memory across restarts: which requests it finished, and what is installed.

JetStream redelivers a request whose ack was lost (agent killed between reporting and acking). The
ledger lets the agent recognise it and just ack, so the plan does not run a second time. The file is
replaced atomically (write a temp file, fsync, rename), so a crash leaves the old or the new record,
never half of one. Put the state dir on a volume that outlives the container (an emptyDir does)."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from fleetlattice.api.messages import InstallRequest

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.json"
# Redeliveries come within max_deliver * ack_wait of the first delivery; this many ids reach far beyond.
FINISHED_LIMIT = 1000

Outcome = Literal["done", "failed", "scrubbed"]


class LedgerRecord(BaseModel):
    finished: dict[str, Outcome] = Field(default_factory=dict)
    """requestId -> how it ended, oldest first."""
    installed: InstallRequest | None = None
    """The last install that succeeded (a scrub clears it): its version and params name what is installed."""
    result: dict[str, Any] = Field(default_factory=dict)
    """The `done` report of that install (pods, health, ...)."""


class Ledger:
    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / LEDGER_FILE
        self._lock = asyncio.Lock()
        self.record = self._load()

    def _load(self) -> LedgerRecord:
        try:
            return LedgerRecord.model_validate_json(self._path.read_bytes())
        except FileNotFoundError:
            return LedgerRecord()
        except (OSError, ValidationError) as error:
            # Losing the record only costs a re-run of an idempotent plan; refusing to start costs the silo.
            log.error("ignoring unreadable ledger %s: %s", self._path, error)
            return LedgerRecord()

    def outcome(self, request_id: str) -> Outcome | None:
        return self.record.finished.get(request_id)

    async def finish(
        self,
        request_id: str,
        outcome: Outcome,
        installed: InstallRequest | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Record that `request_id` ended with `outcome`; a `done` also records what is now installed,
        a `scrubbed` that nothing is."""
        async with self._lock:
            record = self.record.model_copy(deep=True)
            record.finished.pop(request_id, None)
            record.finished[request_id] = outcome
            for old in list(record.finished)[: max(0, len(record.finished) - FINISHED_LIMIT)]:
                del record.finished[old]
            if outcome == "done":
                record.installed, record.result = installed, result or {}
            elif outcome == "scrubbed":
                record.installed, record.result = None, {}
            await asyncio.to_thread(_write_atomically, self._path, record.model_dump_json(by_alias=True).encode())
            self.record = record


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
