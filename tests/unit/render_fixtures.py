"""Inputs shared by the render tests: specs, users and server paths rooted in a temp directory."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
from nats.aio.client import Client

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.siloleaf import ExtraPermissions
from fleetlattice.clients import nats_connection
from fleetlattice.logic.credentials import Credential
from fleetlattice.render.hub_conf import HubUsers, SiloUser, render_hub_conf
from fleetlattice.render.layout import LEAF_CONF_KEY, ServerPaths
from fleetlattice.render.leaf import SEED_ENV, render_leaf_conf
from fleetlattice.render.names import HubRef, SiloRef
from nats_processes import NatsProcess, eventually, free_port, running_server

HUB = HubRef("eose-hub", "fleet-system")

# golden(name, text): compare with tests/unit/golden/<name> (the `golden` fixture in conftest.py).
Golden = Callable[[str, str], None]


def hub_spec(replicas: int = 1, tls: bool = False, **fields: Any) -> FleetHubSpec:
    tls_spec = {"enabled": True, "secretName": "eose-hub-tls"} if tls else {}
    return FleetHubSpec.model_validate({"replicas": replicas, "tls": tls_spec, **fields})


def credential(user: str) -> Credential:
    """A fixed NKey per user name, so rendered output is stable; the runtime tests sign in with its seed."""
    seed = nkeys.encode_seed(hashlib.sha256(user.encode()).digest(), nkeys.PREFIX_BYTE_USER).decode()
    return Credential.from_seed(user, seed)


def local_credential(silo: str) -> Credential:
    """The NKey the silo's own clients sign in to its leaf with."""
    return credential(SiloRef(silo).local_user)


def hub_users(*silos: str, extra: dict[str, ExtraPermissions] | None = None) -> HubUsers:
    extra = extra or {}
    return HubUsers(
        operator=("fleet-operator", credential("fleet-operator").public_key),
        system=("sys", credential("sys").public_key),
        silos=tuple(SiloUser(s, credential(s).public_key, extra.get(s, ExtraPermissions())) for s in silos),
    )


def temp_paths(root: Path, tls_dir: Path | None = None) -> ServerPaths:
    """Server paths under `root` (TLS files from `tls_dir`), for running or checking configs locally."""
    return ServerPaths(
        config_dir=str(root / "config"),
        pid_dir=str(root / "run"),
        data_dir=str(root / "data"),
        tls_dir=str(tls_dir or root / "tls"),
    )


@dataclass
class LocalHub:
    """A rendered hub running as a local process on free loopback ports."""

    server: NatsProcess
    spec: FleetHubSpec
    conf: Path
    paths: ServerPaths

    @property
    def client_url(self) -> str:
        return f"nats://127.0.0.1:{self.spec.ports.client}"

    @property
    def leafnode_url(self) -> str:
        return f"nats://127.0.0.1:{self.spec.ports.leafnodes}"

    async def connect_as(self, user: str, **options: Any) -> Client:
        """A client of the hub signed in as `user` (its fixed NKey)."""
        return await nats_connection.connect(servers=self.client_url, nkeys_seed_str=credential(user).seed, **options)

    def rewrite(self, users: HubUsers) -> None:
        """Re-render the config with other users, as the apply layer does before the reloader's SIGHUP."""
        render_hub_conf(HUB, self.spec, users, self.paths).write(self.conf.parent)


def local_ports() -> dict[str, int]:
    return {"client": free_port(), "cluster": free_port(), "leafnodes": free_port(), "monitoring": free_port()}


def _write_hub_conf(root: Path, users: HubUsers) -> tuple[FleetHubSpec, ServerPaths, Path]:
    spec = hub_spec(ports=local_ports())
    paths = temp_paths(root)
    for directory in (paths.config_dir, paths.pid_dir):
        Path(directory).mkdir(parents=True)
    conf = render_hub_conf(HUB, spec, users, paths).write(Path(paths.config_dir))
    return spec, paths, conf


@asynccontextmanager
async def running_hub(binary: Path, root: Path, users: HubUsers) -> AsyncIterator[LocalHub]:
    """A single-server hub from render_hub_conf; only ports (spec fields) and paths differ from a pod's."""
    spec, paths, conf = _write_hub_conf(root, users)
    async with running_server(binary, conf, spec.ports.monitoring, env={"POD_NAME": "eose-hub-0"}) as server:
        yield LocalHub(server, spec, conf, paths)


def _write_leaf_conf(root: Path, silo: str, hub: LocalHub, client_port: int, monitoring_port: int) -> Path:
    paths = temp_paths(root)
    Path(paths.config_dir).mkdir(parents=True)
    conf = Path(paths.config_file(LEAF_CONF_KEY))
    local_nkey = local_credential(silo).public_key
    conf.write_text(render_leaf_conf(silo, hub.leafnode_url, local_nkey, False, paths, client_port, monitoring_port))
    return conf


@asynccontextmanager
async def running_leaf(
    binary: Path, root: Path, hub: LocalHub, silo: str = "ct-fac"
) -> AsyncIterator[tuple[NatsProcess, int]]:
    """The silo's leaf from render_leaf_conf, dialing `hub` with the silo's seed; yields it and its client port."""
    client_port, monitoring_port = free_port(), free_port()
    conf = _write_leaf_conf(root, silo, hub, client_port, monitoring_port)
    env = {SEED_ENV: credential(silo).seed}
    async with running_server(binary, conf, monitoring_port, env=env) as leaf:

        async def connected() -> bool:
            return bool((await leaf.monitor("leafz"))["leafs"])

        await eventually("the silo's leaf to connect to the hub", connected)
        yield leaf, client_port
