"""What an install plan is: named async steps for an install, and a scrub that undoes it.

The runner (runner.py) owns reporting, deadlines and failure handling, so a plan only does the work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fleetlattice.api.messages import InstallRequest, ScrubRequest


class ProgressSink(Protocol):
    """Where a step sends progress it reports while it runs (the command plan relays its script's)."""

    async def __call__(self, step: str, index: int, total: int, message: str) -> None: ...


@dataclass
class StepOutput:
    """What a finished step tells the runner. `message` None: the step reported its own progress, the
    runner adds none. `result` is merged into the `done` report (pods, health, anything else)."""

    message: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[ProgressSink], Awaitable[StepOutput]]


class StepFailed(Exception):
    """A step's clean failure; `retryable` False tells the operator another attempt would fail the same way."""

    def __init__(self, error: str, *, retryable: bool = True) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable


class InstallPlan(Protocol):
    """Plans must be idempotent: a request redelivered after a crash runs its steps again."""

    def steps(self, request: InstallRequest) -> list[Step]: ...

    async def scrub(self, request: ScrubRequest, installed: InstallRequest | None) -> None:
        """Remove what the install applied. `installed` is the last install that succeeded here (its
        version and params name what to remove), None when the agent has no record of one.
        Raises StepFailed (or anything) when the scrub could not finish."""
        ...
