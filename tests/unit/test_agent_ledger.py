"""What the agent keeps across restarts, and what it refuses to act on."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetlattice.agent import ledger as ledger_module
from fleetlattice.agent.ledger import LEDGER_FILE, Ledger
from fleetlattice.agent.worker import InvalidMessage, parse
from fleetlattice.api.messages import InstallRequest, ScrubRequest

REQUEST = InstallRequest(
    request_id="r1", silo="ct-fac", version="v622", params={"ns": "eose-entry"}, attempt=1,
    deadline=datetime.now(UTC) + timedelta(hours=1),
)  # fmt: skip


async def test_the_record_survives_a_restart(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    await ledger.finish("r1", "done", installed=REQUEST, result={"pods": 6})
    await ledger.finish("r2", "failed")

    reloaded = Ledger(tmp_path)
    assert (reloaded.outcome("r1"), reloaded.outcome("r2"), reloaded.outcome("r3")) == ("done", "failed", None)
    assert reloaded.record.installed == REQUEST
    assert reloaded.record.result == {"pods": 6}
    assert await asyncio.to_thread(os.listdir, tmp_path) == [LEDGER_FILE], "no temp file left behind"


async def test_a_scrub_forgets_the_install_and_a_failure_keeps_it(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    await ledger.finish("r1", "done", installed=REQUEST, result={"pods": 6})
    await ledger.finish("r2", "failed")
    assert ledger.record.installed == REQUEST
    await ledger.finish("s1", "scrubbed")
    assert (ledger.record.installed, ledger.record.result) == (None, {})


async def test_only_the_latest_requests_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "FINISHED_LIMIT", 3)
    ledger = Ledger(tmp_path)
    for n in range(5):
        await ledger.finish(f"r{n}", "failed")
    assert list(Ledger(tmp_path).record.finished) == ["r2", "r3", "r4"]


def test_an_unreadable_ledger_is_ignored(tmp_path: Path) -> None:
    (tmp_path / LEDGER_FILE).write_text("{not json")
    assert Ledger(tmp_path).record.finished == {}


def test_parse_accepts_requests_and_scrubs() -> None:
    assert parse("ct-fac", "fleet.install.ct-fac.request", REQUEST.encode()) == REQUEST
    scrub = ScrubRequest(request_id="s1", reason="engagement-complete")
    assert parse("ct-fac", "fleet.install.ct-fac.scrub", scrub.encode()) == scrub


@pytest.mark.parametrize(
    ("subject", "data", "error"),
    [
        ("fleet.install.ct-fac.request", b"not json", "invalid request"),
        ("fleet.install.ct-fac.request", b'{"requestId": "r1"}', "invalid request"),
        ("fleet.install.ct-fac.scrub", b'{"reason": "no id"}', "invalid scrub"),
        ("fleet.install.ct-fac.request", b" " * 70_000, "over the 65536 byte limit"),
        ("fleet.install.ct-fac.request", REQUEST.model_copy(update={"silo": "msclo"}).encode(), "for silo msclo"),
        ("fleet.install.ct-fac.done", REQUEST.encode(), "unexpected subject"),
    ],
)
def test_parse_refuses_what_the_agent_can_never_act_on(subject: str, data: bytes, error: str) -> None:
    with pytest.raises(InvalidMessage, match=error):
        parse("ct-fac", subject, data)
