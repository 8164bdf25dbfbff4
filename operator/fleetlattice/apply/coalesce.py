"""Coalescing of repeated requests for the same work (e.g. "re-render hub X"): callers that ask while
a run is still queued share it; a caller that asks after a run started gets a fresh one, because that
run may have read the state before the caller's change."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class Coalescer(Generic[K, R]):
    def __init__(self, work: Callable[[K], Awaitable[R]]) -> None:
        self._work = work
        self._queued: dict[K, asyncio.Future[R]] = {}
        self._locks: dict[K, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.runs = 0

    async def run(self, key: K) -> R:
        future = self._queued.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._queued[key] = future
            task = asyncio.create_task(self._run(key, future))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(future)

    async def _run(self, key: K, future: asyncio.Future[R]) -> None:
        async with self._locks.setdefault(key, asyncio.Lock()):
            if self._queued.get(key) is future:
                del self._queued[key]
            self.runs += 1
            try:
                future.set_result(await self._work(key))
            except Exception as exc:  # handed to every waiter
                future.set_exception(exc)
