"""The command plan's contract with a silo's script: stdin, env, stdout lines, exit codes, and that a
cancelled step (deadline, shutdown) leaves no script running. Real scripts, no NATS."""

from __future__ import annotations

import asyncio
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetlattice.agent.command_plan import STEP, CommandPlan
from fleetlattice.agent.plan import StepFailed, StepOutput
from fleetlattice.api.messages import InstallRequest, ScrubRequest
from nats_processes import eventually

REQUEST = InstallRequest(
    request_id="r1", silo="ct-fac", version="v622", params={"ns": "eose-entry"}, attempt=1,
    deadline=datetime.now(UTC) + timedelta(hours=1),
)  # fmt: skip

Progress = tuple[str, int, int, str]

RELAYED = """
request = json.load(sys.stdin)
print("starting", request["params"]["ns"], os.environ["FLEET_VERSION"])
print(json.dumps({"step": "pull", "index": 1, "total": 2, "message": "pulled", "result": {"pods": 1}}))
print("plain text for pull")
print(json.dumps([1, 2]))
print(json.dumps({"step": "up", "index": 2, "total": 2, "result": {"pods": 6, "health": "ok"}}))
"""
# Writes what it was given to the file named by argv[1].
SCRUB_SEEN = """
request = json.load(sys.stdin)
env = [os.environ.get(k, "") for k in ("FLEET_SCRUB", "FLEET_VERSION", "FLEET_REQUEST_ID", "FLEET_SILO")]
open(sys.argv[1], "w").write(json.dumps([request["reason"], *env]))
"""
# Starts a child, writes both pids to argv[1], and sleeps far beyond any test.
STUCK = """
import subprocess, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
time.sleep(60)
"""


def plan(tmp_path: Path, script: str, *args: Path) -> CommandPlan:
    path = tmp_path / "script.py"
    path.write_text(f"import json, os, sys\n{script}\n")
    return CommandPlan(shlex.join([sys.executable, str(path), *map(str, args)]), "ct-fac")


async def run(command: CommandPlan) -> tuple[StepOutput, list[Progress]]:
    reports: list[Progress] = []

    async def sink(step: str, index: int, total: int, message: str) -> None:
        reports.append((step, index, total, message))

    (step,) = command.steps(REQUEST)
    assert step.name == STEP
    return await step.run(sink), reports


async def test_stdout_lines_become_progress_and_the_last_result_is_kept(tmp_path: Path) -> None:
    output, reports = await run(plan(tmp_path, RELAYED))
    assert reports == [
        (STEP, 0, 0, "starting eose-entry v622"),
        ("pull", 1, 2, "pulled"),
        ("pull", 1, 2, "plain text for pull"),
        ("pull", 1, 2, "[1, 2]"),  # JSON that is not an object is just text
        ("up", 2, 2, ""),
    ]
    assert output == StepOutput(message=None, result={"pods": 6, "health": "ok"})


@pytest.mark.parametrize(("code", "retryable"), [(1, True), (3, False), (42, True)])
async def test_exit_codes(tmp_path: Path, code: int, retryable: bool) -> None:
    script = f"print('a' * 10, file=sys.stderr)\nprint('disk full', file=sys.stderr)\nsys.exit({code})"
    with pytest.raises(StepFailed) as failed:
        await run(plan(tmp_path, script))
    assert (failed.value.error, failed.value.retryable) == ("aaaaaaaaaa\ndisk full", retryable)


async def test_silent_failure_names_the_exit_code(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="exited with code 2"):
        await run(plan(tmp_path, "sys.exit(2)"))


async def test_scrub_gets_the_scrub_request_and_the_installed_version(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    command = plan(tmp_path, SCRUB_SEEN, seen)
    await command.scrub(ScrubRequest(request_id="s1", reason="engagement-complete"), REQUEST)
    assert seen.read_text() == '["engagement-complete", "1", "v622", "s1", "ct-fac"]'


async def test_cancelling_the_step_kills_the_script_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = plan(tmp_path, STUCK, pids)
    task = asyncio.create_task(run(command))

    async def started() -> bool:
        return pids.exists() and len(pids.read_text().split()) == 2

    await eventually("the script and its child to start", started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    script, child = (int(pid) for pid in pids.read_text().split())

    async def gone() -> bool:
        return not any(_alive(pid) for pid in (script, child))

    await eventually("the script and its child to be killed", gone)


def _alive(pid: int) -> bool:
    """Running, not a zombie: the killed child is reparented and may wait to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or exiting as we read
        return False


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a command"):
        CommandPlan("  ", "ct-fac")
