"""The human CLI's pure parts: the status table and the progress bar."""

import logging
import re
from datetime import UTC, datetime

import pytest

from fleetlattice.cli.human import progress_bar, status_rows, table
from fleetlattice.cli.main import build_parser
from fleetlattice.cli.run import configure_logging

NOW = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)


def leaf(silo: str, connected: bool, heartbeat: str | None = None, version: str = "") -> dict:
    return {"spec": {"silo": silo}, "status": {"connected": connected, "lastHeartbeat": heartbeat,
                                                 "installedVersion": version}}


def inst(name: str, silo: str, created: str, phase: str, version: str = "") -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": {"silo": silo},
            "status": {"phase": phase, "result": {"version": version}}}


def test_status_rows_pick_the_latest_install_per_silo() -> None:
    rows = status_rows(
        [leaf("msclo", False), leaf("ct-fac", True, "2026-11-21T12:00:00Z", "v622")],
        [inst("ct-fac-v621", "ct-fac", "2026-11-20T00:00:00Z", "Succeeded", "v621"),
         inst("ct-fac-v622", "ct-fac", "2026-11-21T00:00:00Z", "InProgress")],
        NOW,
    )
    assert rows == [["ct-fac", "yes", "30s ago", "v622", "ct-fac-v622 InProgress"],
                    ["msclo", "no", "never", "-", "-"]]
    assert table(["SILO", "CONNECTED", "LAST HEARTBEAT", "VERSION", "LAST INSTALL"], rows).splitlines()[1].startswith(
        "ct-fac   yes")


def test_progress_bar() -> None:
    bar = progress_bar({"phase": "InProgress", "progress": {"percent": 50, "step": "apply"}}, width=10)
    assert bar == "[#####.....]  50% InProgress apply"
    assert progress_bar({"phase": "Succeeded"}, width=4).startswith("[####] 100%")


def test_install_params_must_be_key_value() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["install", "ct-fac", "--version", "v1", "--param", "novalue"])
    args = build_parser().parse_args(["install", "ct-fac", "--version", "v1", "--param", "a=b=c", "--wait"])
    assert (args.param, args.wait) == (["a=b=c"], True)


def test_operator_log_lines_carry_their_time(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging()
        logging.getLogger("fleetlattice.test").info("hub eose-hub reloaded")
    finally:
        root.handlers[:], root.level = handlers, level
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] ", line), line
    assert line.endswith("hub eose-hub reloaded")
