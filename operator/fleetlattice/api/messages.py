"""Install-bus messages (DESIGN.md "Install bus messages"): JSON, camelCase, UTF-8."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MAX_MESSAGE_BYTES = 64 * 1024


class BusMessage(BaseModel):
    """Agents may add fields (the seeds' tools do), so unknown fields are kept, not refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def encode(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class InstallRequest(BusMessage):
    """operator -> agent: perform this install."""

    request_id: str = Field(min_length=1)
    silo: str
    version: str
    params: dict[str, str] = Field(default_factory=dict)
    attempt: int = Field(ge=1)
    deadline: datetime


class ScrubRequest(BusMessage):
    """operator -> agent: remove the silo's install."""

    request_id: str = Field(min_length=1)
    reason: str = ""


class InstallProgress(BusMessage):
    """agent -> operator: a step finished (or started)."""

    request_id: str | None = None
    step: str = ""
    index: int = Field(0, ge=0)
    total: int = Field(0, ge=0)
    message: str = ""


class InstallDone(BusMessage):
    """agent -> operator: install complete. Extra fields (e.g. gamma1) land in result.details."""

    request_id: str | None = None
    version: str | None = None
    pods: int | None = Field(None, ge=0)
    health: str | None = None


class InstallFailed(BusMessage):
    """agent -> operator: install failed at a step."""

    request_id: str | None = None
    step: str = ""
    error: str = ""
    retryable: bool = True


class Scrubbed(BusMessage):
    """agent -> operator: scrub complete."""

    request_id: str | None = None


class SiloState(BusMessage):
    """The agent's heartbeat, stored as the silo's key in FLEET_STATE."""

    silo: str
    agent: str = "fleetlattice-agent"
    ts: datetime
    health: str = "ok"
    version: str | None = None
    pods: int | None = None
    active_request_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


AGENT_REPORTS: dict[str, type[BusMessage]] = {
    "progress": InstallProgress,
    "done": InstallDone,
    "failed": InstallFailed,
    "scrubbed": Scrubbed,
}
