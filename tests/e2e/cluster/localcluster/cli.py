"""A real single-node Kubernetes cluster on this machine, without Docker.

    python tests/e2e/cluster/cluster install-deps   # apt packages (idempotent)
    python tests/e2e/cluster/cluster build          # Go binaries + OCI images, cached
    python tests/e2e/cluster/cluster up             # idempotent; waits for DNS to work
    python tests/e2e/cluster/cluster status | env | images
    python tests/e2e/cluster/cluster load-image ARCHIVE.tar
    python tests/e2e/cluster/cluster down           # stops and removes everything

(`python -m localcluster ...` is the same, with tests/e2e/cluster on PYTHONPATH.)

Every binary comes from a pinned Go module (gomod/*) or a Debian/PyPI package;
nothing is pulled at run time. All control-plane endpoints listen on loopback
or on the node's bridge address; pod and service traffic never leaves the node
(see network.network_up for the guards). Only stdlib is used so the launcher runs
before any project dependency is installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .builds import build
from .common import CLI, ClusterError, log
from .images import import_image_archive, print_images
from .lifecycle import down, install_deps, log_tails, status, up
from .paths import Paths


def env_lines(paths: Paths | None = None) -> list[str]:
    paths = paths or Paths.from_env()
    return [f"export KUBECONFIG={paths.kubeconfig}", f"export PATH={paths.bin_dir}:$PATH"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install-deps", help="apt-get install the host packages the cluster needs")
    build_p = sub.add_parser("build", help="build binaries and images into the cache")
    build_p.add_argument("--force", action="store_true", help="rebuild even if the cache is complete")
    sub.add_parser("up", help="start the cluster (idempotent)")
    sub.add_parser("down", help="stop the cluster and remove all its state")
    sub.add_parser("status", help="show component and node status")
    sub.add_parser("env", help="print shell exports for KUBECONFIG and PATH")
    sub.add_parser("images", help="list the images the node gets")
    load_p = sub.add_parser("load-image", help="import an OCI/docker archive into the node")
    load_p.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    paths = Paths.from_env()
    try:
        if args.command == "install-deps":
            install_deps()
        elif args.command == "build":
            build(paths, force=args.force)
            log(f"binaries: {paths.bin_dir}")
            print_images()
        elif args.command == "up":
            print_images()
            try:
                up(paths)
            except Exception:
                print(log_tails(paths), file=sys.stderr)
                log(f"up failed; state left for inspection, `{CLI} down` cleans it up")
                raise
        elif args.command == "down":
            down(paths)
        elif args.command == "status":
            return status(paths)
        elif args.command == "env":
            print("\n".join(env_lines(paths)))
        elif args.command == "images":
            print_images()
        elif args.command == "load-image":
            import_image_archive(args.archive, paths)
    except ClusterError as exc:
        log(f"error: {exc}")
        return 1
    return 0
