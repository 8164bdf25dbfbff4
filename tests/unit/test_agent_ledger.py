"""What the agent keeps across restarts, and what it refuses to act on."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetlattice.agent import ledger as ledger_module
from fleetlattice.agent.ledger import LEDGER_FILE, Ledger
from fleetlattice.agent.worker import Incoming, InvalidMessage, parse
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


NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _parse(subject: str, data: bytes, sequence: int = 7) -> Incoming:
    return parse("ct-fac", subject, data, sequence, NOW)


def test_parse_accepts_requests_and_scrubs() -> None:
    assert _parse("fleet.install.ct-fac.request", REQUEST.encode()) == Incoming(REQUEST)
    scrub = ScrubRequest(request_id="s1", reason="engagement-complete")
    assert _parse("fleet.install.ct-fac.scrub", scrub.encode()) == Incoming(scrub)


@pytest.mark.parametrize("data", [b'{"v":"v622"}', b'{"version":"v622"}'])
def test_a_request_published_by_hand_is_named_after_its_sequence(data: bytes) -> None:
    incoming = _parse("fleet.install.ct-fac.request", data, sequence=41)
    assert incoming.by_hand
    request = incoming.message
    assert isinstance(request, InstallRequest)
    assert (request.request_id, request.silo, request.version, request.attempt) == ("bus-41", "ct-fac", "v622", 1)
    assert request.deadline == NOW + timedelta(minutes=15)  # a SiloInstall's default timeout


def test_every_other_field_of_a_request_by_hand_is_a_param() -> None:
    data = b'{"version":"v622","acr":"ctfacentry.azurecr.io","ns":"eose-entry","replicas":2}'
    request = _parse("fleet.install.ct-fac.request", data).message
    assert isinstance(request, InstallRequest)
    assert request.params == {"acr": "ctfacentry.azurecr.io", "ns": "eose-entry", "replicas": "2"}


def test_a_scrub_published_by_hand_scrubs_the_current_install() -> None:
    incoming = _parse("fleet.install.ct-fac.scrub", b'{"reason":"engagement-complete"}', sequence=9)
    assert incoming == Incoming(ScrubRequest(request_id="bus-9", reason="engagement-complete"), by_hand=True)


@pytest.mark.parametrize(
    ("subject", "data", "error", "answered_as"),
    [
        ("fleet.install.ct-fac.request", b"not json", "request is not JSON", "bus-7"),
        ("fleet.install.ct-fac.request", b"[1, 2]", "not a JSON object", "bus-7"),
        ("fleet.install.ct-fac.request", b'{"ns": "eose-entry"}', "request has no version", "bus-7"),
        ("fleet.install.ct-fac.request", b'{"v": "v 622"}', "request cannot be performed", "bus-7"),
        ("fleet.install.ct-fac.request", b'{"requestId": "r1"}', "invalid request", "r1"),
        ("fleet.install.ct-fac.request", b'{"requestId": 5, "v": "x"}', "requestId is not a short string", "bus-7"),
        ("fleet.install.ct-fac.request", b" " * 70_000, "over the 65536 byte limit", "bus-7"),
        ("fleet.install.ct-fac.request", REQUEST.model_copy(update={"silo": "msclo"}).encode(), "for silo msclo",
         REQUEST.request_id),
        ("fleet.install.ct-fac.done", REQUEST.encode(), "unexpected subject", "bus-7"),
    ],
)
def test_parse_refuses_what_the_agent_can_never_act_on_and_names_the_answer(
        subject: str, data: bytes, error: str, answered_as: str) -> None:
    with pytest.raises(InvalidMessage, match=error) as refused:
        _parse(subject, data)
    assert refused.value.request_id == answered_as
