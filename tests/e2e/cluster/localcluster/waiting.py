"""Deadline-based polling: the only way the e2e code waits for something.

Tests and the launcher never sleep "long enough"; they poll a predicate with a
short interval until it holds or a deadline passes, and then fail with a
message that says what was awaited and what was last seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """Raised when a wait_for deadline passes; an AssertionError so pytest shows it plainly."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.5,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Exceptions raised by the predicate count as "not yet" (the API server may be
    restarting, a pod may not exist yet); the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
        except Exception as exc:  # any failure means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


async def async_wait_for(
    predicate: Callable[[], Awaitable[T]],
    timeout: float,  # noqa: ASYNC109 -- the same signature as wait_for; the deadline is the point
    what: str,
    interval: float = 0.5,
) -> T:
    """``wait_for`` for async predicates (NATS clients): same deadline, same "not yet" rules."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while True:
        try:
            result = await predicate()
        except Exception as exc:  # any failure means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        else:
            if result:
                return result
            last = result
        if loop.time() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))  # poll interval until the deadline
