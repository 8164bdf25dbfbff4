"""The agent's retry of a final report is bounded: a report the hub refuses for good, or cannot take
within the deadline, no longer wedges the silo's queue (it once retried forever with the request held)."""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors
import pytest

from fleetlattice.agent.worker import _until_stored


class Publisher:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


@pytest.mark.parametrize("error", [nats.errors.MaxPayloadError(),
                                   nats.js.errors.APIError(code=400, err_code=10054, description="message too large")])
async def test_a_report_refused_for_good_is_given_up_at_once(error: Exception) -> None:
    publish = Publisher(error, error)
    assert await asyncio.wait_for(_until_stored("r done", publish), 5) is False
    assert publish.calls == 1


async def test_a_hub_that_never_answers_is_given_up_at_the_deadline() -> None:
    publish = Publisher(*[nats.errors.TimeoutError() for _ in range(100)])
    assert await asyncio.wait_for(_until_stored("r done", publish, within=2.5), 10) is False
    assert 2 <= publish.calls <= 3


async def test_a_passing_outage_is_waited_out() -> None:
    publish = Publisher(nats.errors.TimeoutError(), nats.js.errors.ServiceUnavailableError())
    assert await asyncio.wait_for(_until_stored("r done", publish, within=30), 10) is True
    assert publish.calls == 3
