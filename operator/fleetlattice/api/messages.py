"""Install-bus messages (DESIGN.md "Install bus messages"): JSON, camelCase, UTF-8."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from fleetlattice.api.siloinstall import MAX_PARAMS

MAX_MESSAGE_BYTES = 64 * 1024
# Every report field is bounded so that no report can grow a SiloInstall's status past what the API server
# stores (a history of 50 entries of 60 KiB each once made every later write of that install fail).
MAX_TEXT = 1024
MAX_NAME = 128
MAX_STEPS = 10_000
MAX_PODS = 1_000_000
# The extra fields of a `done` (the seeds' gamma1 and the like) land in result.details.
MAX_DETAILS_BYTES = 4096



def clip(text: str, limit: int = MAX_TEXT) -> str:
    """`text` cut to fit a bounded report field, saying so, for reporters whose text comes from elsewhere
    (a script's stderr, an exception)."""
    return text if len(text) <= limit else text[: limit - 12] + " [truncated]"


Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]


class BusMessage(BaseModel):
    """Agents may add fields (the seeds' tools do), so unknown fields are kept, not refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def encode(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class InstallRequest(BusMessage):
    """operator -> agent: perform this install."""

    request_id: RequestId
    silo: Name
    version: Name
    params: dict[str, str] = Field(default_factory=dict)
    attempt: int = Field(ge=1)
    deadline: datetime


class ScrubRequest(BusMessage):
    """operator -> agent: remove the silo's install."""

    request_id: RequestId
    reason: Text = ""


class AcceptedRequest(BaseModel):
    """What a request published by hand asked for, echoed in the agent's `accepted` progress report: the
    operator records it as a SiloInstall from this (the request itself is gone from the work queue)."""

    model_config = ConfigDict(extra="forbid")

    version: Name
    params: dict[str, Text] = Field(default_factory=dict, max_length=MAX_PARAMS)


class InstallProgress(BusMessage):
    """agent -> operator: a step finished (or started)."""

    request_id: RequestId | None = None
    step: Name = ""
    index: int = Field(0, ge=0, le=MAX_STEPS)
    total: int = Field(0, ge=0, le=MAX_STEPS)
    message: Text = ""
    request: AcceptedRequest | None = None


class InstallDone(BusMessage):
    """agent -> operator: install complete. Extra fields (e.g. gamma1) land in result.details."""

    request_id: RequestId | None = None
    version: Name | None = None
    pods: int | None = Field(None, ge=0, le=MAX_PODS)
    health: Name | None = None

    @model_validator(mode="after")
    def _details_bounded(self) -> InstallDone:
        extra = self.model_extra or {}
        if extra and len(json.dumps(extra, default=str)) > MAX_DETAILS_BYTES:
            raise ValueError(f"extra fields of a done report exceed {MAX_DETAILS_BYTES} bytes")
        return self


class InstallFailed(BusMessage):
    """agent -> operator: install failed at a step."""

    request_id: RequestId | None = None
    step: Name = ""
    error: Text = ""
    retryable: bool = True


class Scrubbed(BusMessage):
    """agent -> operator: scrub complete."""

    request_id: RequestId | None = None


class SiloState(BusMessage):
    """The agent's heartbeat, stored as key `<silo>.agent` in FLEET_STATE."""

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
