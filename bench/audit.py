"""The API server's audit log of the local cluster, read from an offset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fleetlattice.api import defaults


class AuditLog:
    """The API server's audit log (local cluster): every request with its user agent, so the operator's
    requests can be told from the bench's own and from kubectl's."""

    OPERATOR_AGENTS = ("kopf/", defaults.USER_AGENT)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def take_operator_requests(self) -> int:
        """How many requests the operator made since the last call (the first: since this object was made)."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written is counted next time
        self.offset += len(complete)
        return sum(json.loads(line).get("userAgent", "").startswith(self.OPERATOR_AGENTS)
                   for line in complete.splitlines())

    def operator_requests(self) -> list[dict[str, Any]]:
        """Requests the operator made since this object was made (the log backend writes each event
        before the request returns: --audit-log-mode=blocking, the default)."""
        events = []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            for line in log:
                event = json.loads(line)
                if event.get("userAgent", "").startswith(self.OPERATOR_AGENTS):
                    events.append(event)
        return events
