"""Coalescing: a burst of requests runs the work once more, never zero times after a change."""

import asyncio

from fleetlattice.apply.coalesce import Coalescer


async def test_burst_while_running_costs_one_more_run() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    seen: list[int] = []
    state = {"value": 0}

    async def work(key: str) -> int:
        seen.append(state["value"])
        started.set()
        await release.wait()
        return state["value"]

    coalescer: Coalescer[str, int] = Coalescer(work)
    first = asyncio.create_task(coalescer.run("hub"))
    await started.wait()
    state["value"] = 1  # changed after the first run read it: a new request must see it
    burst = [asyncio.create_task(coalescer.run("hub")) for _ in range(50)]
    release.set()
    results = await asyncio.gather(first, *burst)
    assert coalescer.runs == 2
    assert seen == [0, 1]
    assert results[1:] == [1] * 50


async def test_errors_reach_every_waiter() -> None:
    async def work(key: str) -> int:
        raise RuntimeError("hub gone")

    coalescer: Coalescer[str, int] = Coalescer(work)
    results = await asyncio.gather(*(coalescer.run("hub") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
