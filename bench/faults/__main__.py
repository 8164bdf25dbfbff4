"""`python -m bench.faults [--quick] [--only ...]`: the fault suite of issue 15 on the local cluster. Each fault
is repeated and counted; the table is printed and the figures with their conditions written to bench/results/.
A nonzero count where the issue demands zero makes the exit status 1; times are printed, never judged."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..harness import REPO, machine_conditions, start_env
from . import crashes, hostile, partition, spoof
from .counting import FaultRow, as_json, table, verdict
from .fleet import FaultFleet, start_fleet

# The hub pod last: its replacement may start without the JetStream state the other faults rely on.
FAULTS = ("spoof", "hostile", "kill", "apiserver", "cut", "hub")


@dataclass(frozen=True)
class Sizes:
    silos: int
    operator_kills: int
    hub_deletes: int
    apiserver_restarts: int
    cuts: int
    hostile_reports: int
    honest_installs: int
    spoof_attempts: int


FULL = Sizes(silos=3, operator_kills=20, hub_deletes=3, apiserver_restarts=3, cuts=1, hostile_reports=1000,
             honest_installs=20, spoof_attempts=105)
QUICK = Sizes(silos=2, operator_kills=3, hub_deletes=1, apiserver_restarts=1, cuts=1, hostile_reports=100,
              honest_installs=3, spoof_attempts=21)


def _faults(sizes: Sizes, rng: random.Random) -> dict[str, Callable[[FaultFleet], FaultRow]]:
    return {
        "spoof": lambda f: asyncio.run(spoof.spoofs(f, sizes.spoof_attempts)),
        "hostile": lambda f: asyncio.run(hostile.hostile_reports(f, sizes.honest_installs, sizes.hostile_reports)),
        "kill": lambda f: crashes.operator_kills(f, sizes.operator_kills, rng),
        "apiserver": lambda f: crashes.apiserver_restarted(f, sizes.apiserver_restarts),
        "hub": lambda f: crashes.hub_pod_deleted(f, sizes.hub_deletes),
        "cut": lambda f: partition.leaf_cut_off(f, sizes.cuts),
    }


def run(sizes: Sizes, only: list[str], workdir: Path, seed: int) -> tuple[list[FaultRow], dict[str, Any]]:
    env = start_env(workdir)
    conditions = {**machine_conditions(), **asdict(sizes), "seed": seed,
                  "started": datetime.now(UTC).isoformat(timespec="seconds")}
    errors: dict[str, str] = {}
    rows: list[FaultRow] = []
    fleet = start_fleet(env, [f"fault-{i}" for i in range(sizes.silos)])
    try:
        faults = _faults(sizes, random.Random(seed))
        for name in only:
            print(f"[faults] {name} ...", file=sys.stderr, flush=True)
            try:
                rows.append(faults[name](fleet))
            except Exception as error:  # a broken fault must not hide the others' counts
                traceback.print_exc()
                errors[name] = f"{type(error).__name__}: {error}"
    finally:
        fleet.close()
    return rows, {"conditions": conditions, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: checks the suite still runs")
    parser.add_argument("--only", default=",".join(FAULTS), help=f"comma-separated subset of {FAULTS}, in order")
    parser.add_argument("--seed", type=int, default=None, help="the random moments of the operator kills")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fleet-lattice-faults"),
                        help="logs of the operator and the agents, the agents' run logs")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    # The agents and the operator run as processes with their own logs; this process's own clients are
    # expected to see refused connections and permission errors.
    logging.basicConfig(level=logging.CRITICAL, format="%(name)s: %(message)s")
    only = args.only.split(",")
    if unknown := set(only) - set(FAULTS):
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    mode = "quick" if args.quick else "full"
    rows, results = run(QUICK if args.quick else FULL, only, args.workdir, seed)
    results["conditions"]["mode"] = mode
    failed = verdict(rows)
    print(table(rows, results["conditions"]))
    for fault, error in results["errors"].items():
        print(f"\n{fault}: FAILED to run: {error}")
    if failed:
        print(f"\nnonzero where the issue demands 0: {failed}")
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / ("faults-quick.json" if args.quick else "faults-latest.json")
    path.write_text(json.dumps({**results, "faults": as_json(rows), "verdict": failed}, indent=2) + "\n")
    print(f"\nresults: {path}", file=sys.stderr)
    return 1 if failed or results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
