"""What the launcher shares with the repo's other tools (tests/e2e/image, bench/, the tests): the cache root,
the Go toolchain's version and build environment, and free loopback ports. The one home of each."""

from __future__ import annotations

import os
import socket
import subprocess
from functools import cache
from pathlib import Path


def cache_root() -> Path:
    """Where every build here is cached: $FLEET_LATTICE_CACHE, else ~/.cache/fleet-lattice."""
    return Path(os.environ.get("FLEET_LATTICE_CACHE", Path.home() / ".cache" / "fleet-lattice"))


@cache
def go_version() -> str | None:
    """The Go toolchain's version (`go env GOVERSION`), None without Go; part of every Go build's cache key."""
    try:
        return subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


@cache
def node_version() -> str | None:
    """Node's version (`node --version`), None without Node; part of the Node clients' cache key."""
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def go_env() -> dict[str, str]:
    # GOTOOLCHAIN=local: never fetch another Go toolchain at build time.
    return {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": ""}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
