"""Inputs shared by the render tests: specs, users and server paths rooted in a temp directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.siloleaf import ExtraPermissions
from fleetlattice.render.hub_conf import HubUsers, SiloUser, render_hub_conf
from fleetlattice.render.layout import HUB_CONF_KEY, LEAF_CONF_KEY, ServerPaths
from fleetlattice.render.leaf import REMOTE_URL_ENV, leaf_remote_url, render_leaf_conf
from fleetlattice.render.names import HubRef
from nats_processes import NatsProcess, eventually, free_port, running_server

# bcrypt("pw", cost 4): a real hash, fixed so rendered output is stable; the runtime test logs in with "pw".
PASSWORD = "pw"
BCRYPT_PW = "$2b$04$Nw2h0P70lWsSFUmUlFaNsuIChb5xErcS.0NWsAAftrtJV0EvOCrK2"
HUB = HubRef("eose-hub", "fleet-system")

# golden(name, text): compare with tests/unit/golden/<name> (the `golden` fixture in conftest.py).
Golden = Callable[[str, str], None]


def hub_spec(replicas: int = 1, tls: bool = False, **fields: Any) -> FleetHubSpec:
    tls_spec = {"enabled": True, "secretName": "eose-hub-tls"} if tls else {}
    return FleetHubSpec.model_validate({"replicas": replicas, "tls": tls_spec, **fields})


def hub_users(*silos: str, extra: dict[str, ExtraPermissions] | None = None) -> HubUsers:
    extra = extra or {}
    return HubUsers(
        operator=("fleet-operator", BCRYPT_PW),
        system=("sys", BCRYPT_PW),
        silos=tuple(SiloUser(s, BCRYPT_PW, extra.get(s, ExtraPermissions())) for s in silos),
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

    def url_as(self, user: str) -> str:
        return f"nats://{user}:{PASSWORD}@127.0.0.1:{self.spec.ports.client}"

    def rewrite(self, users: HubUsers) -> None:
        """Re-render the config with other users, as the apply layer does before the reloader's SIGHUP."""
        self.conf.write_text(render_hub_conf(HUB, self.spec, users, self.paths))


def local_ports() -> dict[str, int]:
    return {"client": free_port(), "cluster": free_port(), "leafnodes": free_port(), "monitoring": free_port()}


def _write_hub_conf(root: Path, users: HubUsers) -> tuple[FleetHubSpec, ServerPaths, Path]:
    spec = hub_spec(ports=local_ports())
    paths = temp_paths(root)
    for directory in (paths.config_dir, paths.pid_dir):
        Path(directory).mkdir(parents=True)
    conf = Path(paths.config_file(HUB_CONF_KEY))
    conf.write_text(render_hub_conf(HUB, spec, users, paths))
    return spec, paths, conf


@asynccontextmanager
async def running_hub(binary: Path, root: Path, users: HubUsers) -> AsyncIterator[LocalHub]:
    """A single-server hub from render_hub_conf; only ports (spec fields) and paths differ from a pod's."""
    spec, paths, conf = _write_hub_conf(root, users)
    async with running_server(binary, conf, spec.ports.monitoring, env={"POD_NAME": "eose-hub-0"}) as server:
        yield LocalHub(server, spec, conf, paths)


def _write_leaf_conf(root: Path, silo: str, client_port: int, monitoring_port: int) -> Path:
    paths = temp_paths(root)
    Path(paths.config_dir).mkdir(parents=True)
    conf = Path(paths.config_file(LEAF_CONF_KEY))
    conf.write_text(render_leaf_conf(silo, False, paths, client_port, monitoring_port))
    return conf


@asynccontextmanager
async def running_leaf(
    binary: Path, root: Path, hub: LocalHub, silo: str = "ct-fac"
) -> AsyncIterator[tuple[NatsProcess, int]]:
    """The silo's leaf from render_leaf_conf, dialing `hub` with the silo's URL; yields it and its client port."""
    client_port, monitoring_port = free_port(), free_port()
    conf = _write_leaf_conf(root, silo, client_port, monitoring_port)
    env = {REMOTE_URL_ENV: leaf_remote_url(hub.leafnode_url, silo, PASSWORD)}
    async with running_server(binary, conf, monitoring_port, env=env) as leaf:

        async def connected() -> bool:
            return bool((await leaf.monitor("leafz"))["leafs"])

        await eventually("the silo's leaf to connect to the hub", connected)
        yield leaf, client_port
