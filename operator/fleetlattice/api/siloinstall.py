"""SiloInstall: one install or upgrade of a silo, carried over the install bus."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from fleetlattice.api.base import (
    ZERO_DURATION_PATTERN,
    ApiModel,
    Duration,
    Rule,
    SiloName,
    StatusBase,
    StatusModel,
    silo_field,
)

Phase = Literal["Pending", "Requested", "InProgress", "Succeeded", "Failed", "TimedOut", "Scrubbing"]
FINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "TimedOut"})
HISTORY_LIMIT = 50


MAX_PARAMS = 32
MAX_PARAM_KEY = 63
MAX_PARAM_VALUE = 1024
PARAM_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
PARAM_KEYS_CEL = f"self.all(k, size(k) <= {MAX_PARAM_KEY} && k.matches('{PARAM_KEY_PATTERN}'))"
PARAM_KEYS_MESSAGE = f"param names are identifiers of at most {MAX_PARAM_KEY} characters (letters, digits, _ . -)"
ParamValue = Annotated[str, StringConstraints(max_length=MAX_PARAM_VALUE)]


def _param_keys_valid(params: dict[str, str]) -> bool:
    return all(len(k) <= MAX_PARAM_KEY and re.fullmatch(PARAM_KEY_PATTERN, k) for k in params)


class SiloInstallSpec(ApiModel):
    """Desired install of a silo."""

    rules = (
        Rule(f"!self.timeout.matches('{ZERO_DURATION_PATTERN}')", "timeout must be longer than zero",
             lambda s: not re.fullmatch(ZERO_DURATION_PATTERN, s.timeout)),
        Rule("!has(self.params) || " + PARAM_KEYS_CEL.replace("self.all", "self.params.all"), PARAM_KEYS_MESSAGE,
             lambda s: _param_keys_valid(s.params)),
    )

    silo: SiloName = silo_field("Silo to install; must have a SiloLeaf in this namespace.")
    version: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$",
        description="Version to install, e.g. v622.",
    )
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        max_length=MAX_PARAMS,
        description=f"Free-form string parameters passed to the silo's agent: at most {MAX_PARAMS}, keys up to "
        f"{MAX_PARAM_KEY} characters, values up to {MAX_PARAM_VALUE} (so every request fits one bus message).",
    )
    timeout: Duration = Field("15m", description="How long one attempt may take before it is TimedOut.")
    retries: int = Field(2, ge=0, le=10, description="Further attempts after a retryable failure or timeout.")
    backoff: Duration = Field("30s", description="Wait before the first retry; doubles for each later one.")
    scrub_on_delete: bool = Field(False, description="On delete, ask the agent to remove the install.")
    scrub_timeout: Duration = Field("2m", description="How long delete waits for the agent's scrubbed reply.")


class Progress(StatusModel):
    """The latest step the agent reported."""

    step: str = Field("", description="Name of the step.")
    index: int = Field(0, description="1-based index of the step.")
    total: int = Field(0, description="Number of steps in the plan.")
    percent: int = Field(0, description="index/total as a percentage.")
    message: str = Field("", description="Agent's message for the step.")


class HistoryEntry(StatusModel):
    """One reported step, kept in a bounded audit trail."""

    time: datetime = Field(description="When the operator received the report.")
    attempt: int = Field(description="Attempt the report belongs to.")
    kind: Literal["request", "progress", "done", "failed", "timeout", "scrub", "scrubbed"] = Field(
        description="Kind of report."
    )
    step: str = Field("", description="Step name.")
    message: str = Field("", description="Message or error.")


class InstallResult(StatusModel):
    """What the agent reported on completion."""

    version: str = Field("", description="Version the silo now runs.")
    pods: int | None = Field(None, description="Pods ready after the install.")
    health: str = Field("", description="Health the agent reported.")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other fields of the done message.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class InstallError(StatusModel):
    """The last failure the agent reported."""

    step: str = Field("", description="Step that failed.")
    error: str = Field("", description="Error text.")
    retryable: bool = Field(True, description="Whether another attempt may succeed.")


class SiloInstallStatus(StatusBase):
    """Observed state of the install, built from the silo agent's messages."""

    phase: Phase = Field(
        "Pending", description="Pending, Requested, InProgress, Succeeded, Failed, TimedOut, Scrubbing."
    )
    attempt: int = Field(0, description="Current attempt, 1-based.")
    request_id: str = Field("", description="requestId of the current attempt.")
    progress: Progress | None = Field(None, description="Latest step.")
    progress_text: str = Field("", description="Progress for display, e.g. 3/7 (42%).")
    history: list[HistoryEntry] = Field(
        default_factory=list, max_length=HISTORY_LIMIT, description="Bounded audit trail, newest last."
    )
    result: InstallResult | None = Field(None, description="Completion report.")
    last_error: InstallError | None = Field(None, description="Last failure.")
    requested_at: datetime | None = Field(None, description="When the current attempt was published.")
    started_at: datetime | None = Field(None, description="When the first attempt was published.")
    completed_at: datetime | None = Field(None, description="When the install reached a final phase.")
    next_attempt_at: datetime | None = Field(None, description="When the next retry will be published.")
    scrub_request_id: str = Field("", description="requestId of the scrub sent on delete.")
    scrubbed_at: datetime | None = Field(None, description="When the agent confirmed the scrub.")
    last_heartbeat: datetime | None = Field(None, description="Last heartbeat of the silo's agent (FLEET_STATE).")
