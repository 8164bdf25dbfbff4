"""`python -m bench [--quick] [--only streams,installs,scale,burst]`: the benchmarks on the local cluster.
Prints a Markdown table and writes the figures with their conditions to bench/results/."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import burst, installs, scale, streams
from .harness import REPO, delete_namespace, machine_conditions, start_env
from .report import table

SCENARIOS = ("streams", "installs", "scale", "burst")


@dataclass(frozen=True)
class Sizes:
    streams: int
    installs: int
    silos: int
    real_leaves: int
    progress_per_silo: int


FULL = Sizes(streams=200, installs=100, silos=1000, real_leaves=3, progress_per_silo=10)
QUICK = Sizes(streams=10, installs=5, silos=20, real_leaves=1, progress_per_silo=5)


async def _scenario(results: dict[str, Any], name: str, work: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
    """Run one scenario; a failure is recorded (and printed) and the run goes on with the next."""
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        results["scenarios"].update(await work())
        return True
    except Exception as error:  # a broken scenario must not hide the others' figures
        traceback.print_exc()
        results["errors"][name] = f"{type(error).__name__}: {error}"
        return False


async def run(sizes: Sizes, only: set[str], workdir: Path, profile: Path | None,
              memray: Path | None = None) -> dict[str, Any]:
    env = start_env(workdir)
    results: dict[str, Any] = {
        "conditions": {**machine_conditions(), **asdict(sizes),
                       "started": datetime.now(UTC).isoformat(timespec="seconds")},
        "scenarios": {}, "errors": {},
    }
    if only & {"streams", "installs"}:
        operator = env.operator("main")
        operator.start()
        try:
            if "streams" in only:
                await _scenario(results, "streams", lambda: streams.compare(env, sizes.streams))
            if "installs" in only:
                await _scenario(results, "installs", lambda: _wrap("installs", installs.measure(env, sizes.installs)))
        finally:
            operator.stop()
    if only & {"scale", "burst"}:
        state: dict[str, Any] = {}

        async def cold_start() -> dict[str, Any]:
            figures, state["run"], state["operator"] = await scale.cold_start(env, sizes.silos, sizes.real_leaves,
                                                                                   profile, memray)
            return {"scale": figures, "reload": await scale.hub_reload(env, state["run"])}

        try:
            if await _scenario(results, "scale", cold_start) and "burst" in only:
                await _scenario(results, "burst", lambda: _wrap(
                    "burst", burst.measure(env, state["run"], sizes.progress_per_silo)))
        finally:
            if "run" in state:
                await state["run"].fleet.close()
                state["operator"].stop()
                delete_namespace(env.kubectl, state["run"].namespace)
    return results


async def _wrap(key: str, work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    return {key: await work}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N: checks the benchmarks still run")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fleet-lattice-bench"),
                        help="logs of the operator and NACK")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--profile", action="store_true",
                        help="sample the operator with py-spy during the scale scenario (needs '.[bench]')")
    parser.add_argument("--memray", action="store_true",
                        help="run the scale scenario's operator under memray (needs '.[bench]'); then "
                             "`python -m memray summary FILE` shows what held the memory at its peak")
    parser.add_argument("--silos", type=int, default=None,
                        help="silos of the scale and burst scenarios instead of the mode's (e.g. 3500, the OCM anchor)")
    args = parser.parse_args(argv)
    # The synthetic agents use the real agent's code, whose "waiting for consumer" is expected here.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("fleetlattice.agent").setLevel(logging.ERROR)
    only = set(args.only.split(","))
    if unknown := only - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    mode = "quick" if args.quick else "full"
    sizes = QUICK if args.quick else FULL
    if args.silos is not None:
        sizes = replace(sizes, silos=args.silos)
        mode += f"-silos{args.silos}"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.results.mkdir(parents=True, exist_ok=True)
    profile = args.results / f"profile-scale-{mode}-{stamp}.txt" if args.profile else None
    memray = args.results / f"memray-scale-{mode}-{stamp}.bin" if args.memray else None
    results = asyncio.run(run(sizes, only, args.workdir, profile, memray))
    results["conditions"]["mode"] = mode
    print(table(results))
    for path in (args.results / f"{mode}-{stamp}.json", args.results / f"latest-{mode}.json"):
        path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.results / f'latest-{mode}.json'}", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
