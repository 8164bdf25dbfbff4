"""The `fleetlattice` command: operator, agent, and tools for humans."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fleetlattice.api.crdgen import write_crds
from fleetlattice.api.defaults import LOCAL_SEED_ENV
from fleetlattice.clients.kube import Kube, load_config


def _cmd_crds(args: argparse.Namespace) -> int:
    for path in write_crds(Path(args.output)):
        print(path)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from fleetlattice.cli.run import run

    run(namespaces=args.namespace, kubeconfig=args.kubeconfig, address_mode=args.hub_address,
        peering=args.peering, liveness=args.liveness, metrics_port=args.metrics_port, priority=args.priority)
    return 0


def _cmd_leaf_export(args: argparse.Namespace) -> int:
    from fleetlattice.cli.leaf_export import ExportError, export_bundle

    load_config(args.kubeconfig)
    try:
        text = asyncio.run(export_bundle(Kube(), args.namespace, args.name, args.target_namespace))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def _cmd_user_context(args: argparse.Namespace) -> int:
    from fleetlattice.cli.user_context import ContextError, nats_config_dir, user_context, write_files

    load_config(args.kubeconfig)
    try:
        ctx = asyncio.run(user_context(Kube(), args.namespace, args.name, args.server, args.context))
    except ContextError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    files = ctx.files(Path(args.nats_config) if args.nats_config else nats_config_dir())
    write_files(files)
    for path in files:
        print(f"wrote {path}", file=sys.stderr)
    print(f"nats --context {ctx.name} sub 'fleet.>'")
    return 0


def _local_seed(path: str | None) -> str | None:
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(LOCAL_SEED_ENV) or None


def _cmd_agent(args: argparse.Namespace) -> int:
    from fleetlattice.agent.service import AgentConfig, main

    return main(
        AgentConfig(
            silo=args.silo,
            nats_url=args.nats,
            nkey_seed=_local_seed(args.nkey),
            plan=args.plan,
            manifests=Path(args.manifests) if args.manifests else None,
            namespaces=frozenset(args.namespace),
            command=args.command,
            kubeconfig=args.kubeconfig,
            heartbeat_seconds=args.heartbeat,
            state_dir=Path(args.state_dir),
        )
    )


def _human(args: argparse.Namespace, action: Callable[[Kube], Awaitable[Any]]) -> int:
    from fleetlattice.cli.human import CliError

    load_config(args.kubeconfig)
    try:
        result = asyncio.run(action(Kube()))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if isinstance(result, str):
        print(result)
        return 0
    return int(result)


def _cmd_status(args: argparse.Namespace) -> int:
    from fleetlattice.cli.human import status

    return _human(args, lambda kube: status(kube, args.namespace))


def _cmd_install(args: argparse.Namespace) -> int:
    from fleetlattice.cli.human import install

    params = dict(p.split("=", 1) for p in args.param)
    return _human(args, lambda kube: install(kube, args.namespace, args.silo, args.version, params, args.wait,
                                             args.timeout))


def _param(value: str) -> str:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"--param takes key=value, got {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetlattice", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    crds = sub.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("--output", "-o", default="crds", help="directory to write <plural>.yaml into")
    crds.set_defaults(func=_cmd_crds)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--namespace", "-n", action="append", default=[],
                     help="watch only this namespace (repeatable); default: all namespaces")
    run.add_argument("--kubeconfig", help="kubeconfig to use out of cluster (default: in-cluster, then KUBECONFIG)")
    run.add_argument("--hub-address", choices=["auto", "dns", "clusterip"], default="auto",
                     help="how to reach hubs: Service DNS (in cluster) or ClusterIP (out of cluster); auto picks")
    run.add_argument("--peering", default=None,
                     help="kopf peering name for HA (several replicas, one active); default: standalone")
    run.add_argument("--priority", default=os.environ.get("FLEETLATTICE_PEERING_PRIORITY", "0"),
                     help="kopf peering priority: an integer, or auto (derived from the pod name)")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    run.add_argument("--metrics-port", type=int, default=9090, help="port of the Prometheus /metrics endpoint; 0: off")
    run.set_defaults(func=_cmd_run)

    agent = sub.add_parser("agent", help="run a silo's install agent (talks to the silo's leaf)")
    agent.add_argument("--silo", required=True, help="the silo this agent serves, e.g. ct-fac")
    agent.add_argument("--nats", required=True, help="the silo's leaf, e.g. nats://nats-leaf:4222")
    agent.add_argument("--nkey", help=f"file holding the leaf's local NKey seed (Secret siloleaf-<silo>-local, key "
                                      f"seed); default: the seed itself from ${LOCAL_SEED_ENV}")
    agent.add_argument("--plan", choices=["builtin", "command"], default="builtin",
                       help="builtin: apply --manifests templates; command: run --command")
    agent.add_argument("--manifests", help="directory of manifest templates (builtin plan)")
    agent.add_argument("--namespace", action="append", default=[],
                       help="a namespace a request's params may place objects in, besides those the templates name "
                            "by default (builtin plan; repeatable)")
    agent.add_argument("--command", help="install script and arguments, e.g. '/bin/install.sh --fast' (command plan)")
    agent.add_argument("--kubeconfig", help="the silo cluster's kubeconfig (builtin plan; default: in-cluster)")
    agent.add_argument("--heartbeat", type=float, default=10.0, help="seconds between silo state updates")
    agent.add_argument("--state-dir", default="/var/lib/fleetlattice-agent",
                       help="where the agent remembers finished requests across restarts")
    agent.set_defaults(func=_cmd_agent)

    status = sub.add_parser("status", help="silos: connected, last heartbeat, version, last install")
    status.add_argument("--namespace", "-n", default="default", help="namespace of the fleet")
    status.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")
    status.set_defaults(func=_cmd_status)

    inst = sub.add_parser("install", help="install a version on a silo (creates a SiloInstall)")
    inst.add_argument("silo", help="silo name, e.g. ct-fac")
    inst.add_argument("--version", required=True, help="version to install, e.g. v623")
    inst.add_argument("--param", action="append", default=[], type=_param, help="key=value for the agent (repeatable)")
    inst.add_argument("--timeout", default="15m", help="how long one attempt may take, e.g. 15m")
    inst.add_argument("--wait", action="store_true", help="follow progress; exit 0 Succeeded, 2 Failed, 3 TimedOut")
    inst.add_argument("--namespace", "-n", default="default", help="namespace of the fleet")
    inst.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")
    inst.set_defaults(func=_cmd_install)

    leaf = sub.add_parser("leaf", help="silo leaves").add_subparsers(dest="leaf_command", required=True)
    export = leaf.add_parser("export", help="print the bundle an External silo applies in its own cluster")
    export.add_argument("name", help="SiloLeaf name")
    export.add_argument("--namespace", "-n", default="default", help="namespace of the SiloLeaf")
    export.add_argument("--target-namespace", help="namespace in the silo's cluster (default: the SiloLeaf's "
                                                          "spec.leaf.namespace, else its own)")
    export.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")
    export.set_defaults(func=_cmd_leaf_export)

    user = sub.add_parser("user", help="FleetUsers").add_subparsers(dest="user_command", required=True)
    ctx = user.add_parser("context", help="write a nats CLI context that signs in as a FleetUser")
    ctx.add_argument("name", help="FleetUser name")
    ctx.add_argument("--namespace", "-n", default="default", help="namespace of the FleetUser")
    ctx.add_argument("--context", help="context name (default: the FleetUser's name)")
    ctx.add_argument("--server", help="hub URL as reachable from here (default: the hub's in-cluster client URL)")
    ctx.add_argument("--nats-config", help="nats CLI config directory (default: $XDG_CONFIG_HOME/nats or "
                                          "~/.config/nats)")
    ctx.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then KUBECONFIG)")
    ctx.set_defaults(func=_cmd_user_context)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
