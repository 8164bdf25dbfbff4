"""The hub's nats.conf, and the hash of the settings that only a restart can change.

Which settings a SIGHUP reload applies (nats-server 2.15; docs.nats.io/reference/config, each checked
by reloading a running 2.15.1 server):

- reloaded: accounts, users (NKeys) and permissions (so adding, removing or re-scoping a silo is a
  reload), max_payload, max_connections, pid_file, client `tls` (also turning it on), cluster routes,
  leafnode remotes. (A connected leaf keeps the permissions it had when it connected; the leaf
  manifests roll the leaf when its silo's permissions change.)
- refused ("config reload not supported"), so they need a restart: port, http_port, cluster
  port/listen and adding the cluster block, leafnodes port and its tls (turning it on changes the
  leafnode auth timeout), server_name, jetstream store_dir and domain, max_subscriptions,
  lame_duck_duration, and *decreasing* max_memory_store / max_file_store (increases reload; any change
  is treated as a restart).

`restart_hash` covers exactly the refused group (plus the image); the apply layer puts it in the pod
template so only those changes roll the StatefulSet, while everything else is applied by the reloader
sidecar's SIGHUP.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from fleetlattice.api import defaults
from fleetlattice.api.base import size_bytes
from fleetlattice.api.bus import JS_DOMAIN
from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.fleetuser import FleetUserSpec
from fleetlattice.api.siloleaf import ExtraPermissions
from fleetlattice.render.layout import (
    CONTAINER_PATHS,
    HUB_CONF_KEY,
    HUB_USER_PARTS,
    LAME_DUCK_SECONDS,
    ServerPaths,
    hub_users_key,
)
from fleetlattice.render.names import HubRef
from fleetlattice.render.permissions import Permissions, silo_permissions
from fleetlattice.render.templating import render_template
from fleetlattice.render.user_permissions import user_permissions

# Silo credentials serve the leaf (LEAFNODE) and, for tools like `nats` run against the hub, clients.
SILO_CONNECTION_TYPES = ("LEAFNODE", "STANDARD")
# People and apps sign in to the hub's client port; no FleetUser can bring up a leafnode.
USER_CONNECTION_TYPES = ("STANDARD",)


class ConfUser(NamedTuple):
    """A user without permissions of its own (full access within its account). `name` is only a comment in
    the config: the server knows the user by its public NKey."""

    name: str
    nkey: str


@dataclass(frozen=True)
class SiloUser:
    """A silo's hub user: the silo name is the user name."""

    silo: str
    nkey: str  # public key: the config holds no secret and no hash of one
    extra: ExtraPermissions = field(default_factory=ExtraPermissions)

    @property
    def name(self) -> str:
        return self.silo

    @property
    def permissions(self) -> Permissions:
        return silo_permissions(self.silo, self.extra)

    @property
    def connection_types(self) -> tuple[str, ...]:
        return SILO_CONNECTION_TYPES


@dataclass(frozen=True)
class FleetUserConf:
    """A FleetUser's hub user, named after the object."""

    name: str
    nkey: str
    spec: FleetUserSpec

    @property
    def permissions(self) -> Permissions:
        return user_permissions(self.name, self.spec)

    @property
    def connection_types(self) -> tuple[str, ...]:
        return USER_CONNECTION_TYPES


@dataclass(frozen=True)
class HubUsers:
    """Every user of a hub. Public keys are inputs (kept in Secrets by the apply layer), so rendering is
    deterministic; silos are kept sorted so the config, and its hash, do not depend on list order."""

    operator: ConfUser  # the operator's own user (e.g. fleet-operator): full access to account FLEET
    system: ConfUser  # the system account's user (e.g. sys), for monitoring requests
    silos: tuple[SiloUser, ...] = ()
    fleet_users: tuple[FleetUserConf, ...] = ()

    def __post_init__(self) -> None:
        for what, names in (("silo", [s.silo for s in self.silos]), ("fleet", [u.name for u in self.fleet_users])):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{what} users must be unique, duplicated: {', '.join(duplicates)}")
        # Plain (name, public key) pairs are accepted too.
        object.__setattr__(self, "operator", ConfUser(*self.operator))
        object.__setattr__(self, "system", ConfUser(*self.system))
        object.__setattr__(self, "silos", tuple(sorted(self.silos, key=lambda s: s.silo)))
        object.__setattr__(self, "fleet_users", tuple(sorted(self.fleet_users, key=lambda u: u.name)))

    @property
    def keys(self) -> frozenset[str]:
        """The public keys of the silos and FleetUsers (the operator's and system's are always there)."""
        return frozenset([*(s.nkey for s in self.silos), *(u.nkey for u in self.fleet_users)])


def _routes(hub: HubRef, spec: FleetHubSpec) -> list[str]:
    """Every replica's route URL (a server ignores its own); none for a single server."""
    if spec.replicas == 1:
        return []
    return [f"nats://{hub.pod_host(i)}:{spec.ports.cluster}" for i in range(spec.replicas)]


# What one ConfigMap may hold (the API server refuses more than 1 MiB for the whole object), less room for
# its metadata.
CONFIG_PART_LIMIT = 1024 * 1024 - 16 * 1024


# The server_metadata key (reloadable; /varz shows it) under which each server reports its config digest.
CONFIG_DIGEST_KEY = "fleet_lattice_config"


class HubConfTooLarge(ValueError):
    """The users do not fit the hub's ConfigMaps."""


@dataclass(frozen=True)
class HubConf:
    """The hub's config as files: nats.conf and the user parts it includes, each a ConfigMap of its own."""

    main: str
    parts: tuple[str, ...]
    # What each server reports under CONFIG_DIGEST_KEY in its /varz metadata once it has loaded these files.
    digest: str

    def files(self) -> dict[str, str]:
        return {HUB_CONF_KEY: self.main, **{hub_users_key(i): text for i, text in enumerate(self.parts)}}

    @property
    def text(self) -> str:
        """Every file, for reading and searching the whole config at once."""
        return "\n".join(self.files().values())

    def write(self, config_dir: Path) -> Path:
        """Write the files as the pods mount them; returns the path of nats.conf."""
        for key, text in self.files().items():
            (config_dir / key).write_text(text)
        return config_dir / HUB_CONF_KEY


def _part_of(kind: str, name: str) -> int:
    """A stable part per user, so a change to one silo rewrites one part, not all of them."""
    return zlib.crc32(f"{kind}/{name}".encode()) % HUB_USER_PARTS


def _user_parts(hub: HubRef, users: HubUsers) -> tuple[tuple[str, ...], list[tuple[str, str, str]]]:
    """The parts' texts and, in order, the config variable each user is defined as (with kind and name)."""
    entries: list[list[tuple[str, str, SiloUser | FleetUserConf]]] = [[] for _ in range(HUB_USER_PARTS)]
    for kind, user in [*(("silo", s) for s in users.silos), *(("fleet user", u) for u in users.fleet_users)]:
        index = _part_of(kind, user.name)
        entries[index].append((f"FLEET_USER_{index}_{len(entries[index])}", kind, user))
    texts = tuple(render_template("users.conf.j2", hub_name=hub.name, part=i, parts=HUB_USER_PARTS, entries=part)
                  for i, part in enumerate(entries))
    for i, text in enumerate(texts):
        if len(text.encode()) > CONFIG_PART_LIMIT:
            raise HubConfTooLarge(
                f"the users of FleetHub {hub.namespace}/{hub.name} need more than {HUB_USER_PARTS} ConfigMaps of "
                f"1 MiB (part {i} is {len(text.encode())} bytes); split the fleet across hubs")
    return texts, [(variable, kind, user.name) for part in entries for variable, kind, user in part]


def render_hub_conf(hub: HubRef, spec: FleetHubSpec, users: HubUsers, paths: ServerPaths = CONTAINER_PATHS) -> HubConf:
    """The config of every replica of `hub` (server_name comes from each pod's POD_NAME)."""
    parts, variables = _user_parts(hub, users)
    main = render_template(
        "nats.conf.j2",
        hub_name=hub.name,
        ports=spec.ports,
        paths=paths,
        lame_duck=f"{LAME_DUCK_SECONDS}s",
        limits={
            "max_payload": size_bytes(spec.limits.max_payload),
            "max_connections": spec.limits.max_connections,
            "max_subscriptions": spec.limits.max_subscriptions,
        },
        jetstream={
            "max_memory_store": size_bytes(spec.jetstream.max_memory_store),
            "max_file_store": size_bytes(spec.jetstream.max_file_store),
        },
        js_domain=JS_DOMAIN,
        tls=spec.tls.enabled,
        routes=_routes(hub, spec),
        fleet_account=defaults.FLEET_ACCOUNT,
        system_account=defaults.SYSTEM_ACCOUNT,
        operator=users.operator,
        system=users.system,
        user_files=[hub_users_key(i) for i in range(len(parts))],
        users_hash=hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16],
        user_variables=variables,
    )
    digest = hashlib.sha256("\0".join((main, *parts)).encode()).hexdigest()[:16]
    main += render_template("server_metadata.conf.j2", key=CONFIG_DIGEST_KEY, digest=digest)
    return HubConf(main, parts, digest)


def _restart_settings(hub: HubRef, spec: FleetHubSpec) -> dict[str, Any]:
    return {
        "image": spec.image,
        "serverName": "$POD_NAME",
        "ports": spec.ports.model_dump(mode="json"),
        "cluster": {"name": hub.name, "replicas": spec.replicas},
        "jetstream": {
            "storeDir": CONTAINER_PATHS.store_dir,
            "domain": JS_DOMAIN,
            "maxMemoryStore": size_bytes(spec.jetstream.max_memory_store),
            "maxFileStore": size_bytes(spec.jetstream.max_file_store),
        },
        "maxSubscriptions": spec.limits.max_subscriptions,
        "lameDuckSeconds": LAME_DUCK_SECONDS,
        "tls": spec.tls.enabled,
    }


def restart_hash(hub: HubRef, spec: FleetHubSpec) -> str:
    """Short sha256 of the settings nats-server cannot reload (see the module docstring)."""
    canonical = json.dumps(_restart_settings(hub, spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
