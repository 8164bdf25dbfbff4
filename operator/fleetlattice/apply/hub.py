"""FleetHub apply layer: credentials, the rendered config and children, and the servers' status.

`HubState` is what this process knows of each hub (config locks, when it last wrote a config, which silo
users that config holds, the latest scrape) and the one way to re-render a hub's config: the SiloLeaf
apply layer asks it, so every writer of a hub's config goes through its lock."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.fleetuser import FleetUserSpec
from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.apply.coalesce import Coalescer
from fleetlattice.apply.credentials import CredentialSecrets
from fleetlattice.clients.hub_connections import (
    OPERATOR_USER,
    SYSTEM_USER,
    HubConnections,
    HubNotReachable,
    ReloadRefused,
)
from fleetlattice.clients.kube import Kube
from fleetlattice.clients.monitoring import scrape_all
from fleetlattice.logic.conditions import NotReady, owner_reference
from fleetlattice.logic.credentials import SEED_KEY, Credential
from fleetlattice.logic.hub_status import RELOAD_GRACE, ServerSnapshot, hub_status, missed_reload
from fleetlattice.logic.hub_users import silo_users
from fleetlattice.logic.times import parse_time
from fleetlattice.render.hub_conf import (
    FleetUserConf,
    HubConfTooLarge,
    HubUsers,
    SiloUser,
    render_hub_conf,
    restart_hash,
)
from fleetlattice.render.hub_manifests import render_hub_manifests
from fleetlattice.render.names import (
    CONFIG_HASH_ANNOTATION,
    HubRef,
    UserRef,
)

log = logging.getLogger(__name__)

# kopf's index of the SiloLeaves (handlers.leaf.leaf_bodies): key -> the bodies under it. A live view the watch
# keeps current, filled before any handler runs, so a render reads the silos from memory, not from a LIST.
LeafIndex = Mapping[Any, Iterable[Mapping[str, Any]]]


async def ensure_hub_auth(kube: Kube, hub: HubRef, owner: dict[str, Any]) -> tuple[Credential, Credential]:
    """The operator's and the system account's users: generated once, kept in `<hub>-auth`."""
    secret = await kube.get("Secret", hub.namespace, hub.auth_secret)
    data = (secret or {}).get("data", {})
    operator = Credential.from_secret(data, "operator-")
    system = Credential.from_secret(data, "system-")
    if operator and system:
        return operator, system
    # A Secret of an older release holds passwords, no seeds: replaced here, and the users with it.
    operator = operator or Credential.generate(OPERATOR_USER)
    system = system or Credential.generate(SYSTEM_USER)
    await kube.apply({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": hub.auth_secret, "namespace": hub.namespace, "labels": hub.labels,
                     "ownerReferences": [owner_reference(owner)]},
        "data": {**operator.secret_data("operator-"), **system.secret_data("system-")},
    })
    return operator, system


async def fleet_users(kube: Kube, hub: HubRef, secrets: dict[str, dict[str, str]]) -> tuple[FleetUserConf, ...]:
    """One user per live FleetUser of this hub whose credential is in `secrets` and whose spec is valid."""
    users = []
    for obj in await kube.list("FleetUser", hub.namespace):
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        try:
            spec = FleetUserSpec.model_validate(obj.get("spec") or {})
        except ValueError:
            continue
        cred = Credential.from_secret(secrets.get(UserRef(meta["name"]).credentials_secret, {}))
        if spec.hub == hub.name and cred:
            users.append(FleetUserConf(meta["name"], cred.public_key, spec))
    return tuple(users)


def _valid_spec(leaf: Mapping[str, Any]) -> SiloLeafSpec | None:
    try:
        return SiloLeafSpec.model_validate(leaf["spec"])
    except ValueError:
        return None


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def conf_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(manifest: dict[str, Any]) -> str:
    return conf_hash(json.dumps(manifest, sort_keys=True))


async def _hub_pods(kube: Kube, hub: HubRef) -> list[dict[str, Any]]:
    return await kube.list("Pod", hub.namespace, labels=",".join(f"{k}={v}" for k, v in hub.selector.items()))


async def _nudge_servers(kube: Kube, hub: HubRef, config_hash: str) -> None:
    """Kubelet rewrites a mounted ConfigMap only when it syncs the pod: periodically (a minute or more
    after the write, measured in bench/) or when the pod changes. Annotating each server's pod with the
    new config's hash makes kubelet sync it now, so the reloader sees the file and signals the server
    within about a second. The annotation is not in the pod template: nothing restarts."""
    for pod in await _hub_pods(kube, hub):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        # False when it went since the list: its replacement mounts the new config anyway.
        await kube.annotate("Pod", hub.namespace, meta["name"], {CONFIG_HASH_ANNOTATION: config_hash})


@dataclass
class HubState:
    """Per hub: the config lock (the hub and all its SiloLeaves render one config), when this process
    last wrote that config, the silo users it holds, and the servers' latest scrape (SiloLeaf status
    reads it instead of scraping again)."""

    kube: Kube
    # The silos' credentials: a render reads them from here (one LIST per namespace, then this process's writes).
    credentials: CredentialSecrets
    # For a server that missed a config change: it is asked to reload over NATS.
    connections: HubConnections
    config_written_at: dict[HubRef, datetime] = field(default_factory=dict)
    # The silo and FleetUser credential keys in the config this process last wrote for each hub.
    rendered_user_keys: dict[HubRef, frozenset[str]] = field(default_factory=dict)
    # The hash of the nats.conf this process last wrote (or found) for each hub.
    written_main: dict[HubRef, str] = field(default_factory=dict)
    # The digest each server reports once it has loaded the config this process last rendered (HubConf.digest).
    digests: dict[HubRef, str] = field(default_factory=dict)
    system_users: dict[HubRef, Credential] = field(default_factory=dict)
    # When each server (by pod) was last asked to reload (monotonic clock).
    reload_asked: dict[HubRef, dict[str, float]] = field(default_factory=dict)
    # What this process last applied of each hub's objects ("Kind/name" -> digest of the manifest).
    applied: dict[HubRef, dict[str, str]] = field(default_factory=dict)
    snapshots: dict[HubRef, list[ServerSnapshot]] = field(default_factory=dict)
    _config_locks: dict[HubRef, asyncio.Lock] = field(default_factory=dict)
    _syncs: Coalescer[HubRef, bool] = field(init=False)
    _leaf_index: LeafIndex = field(default_factory=dict)
    # Per hub, each SiloLeaf's parsed spec by uid, with the generation it was parsed at: a render of a thousand
    # silos validates only the specs that changed.
    _leaf_specs: dict[HubRef, dict[str, tuple[int, SiloLeafSpec | None]]] = field(default_factory=dict)
    # Per hub, each silo credential's public key by Secret name, with the seed it came from: deriving it from the
    # seed cost 50 ms per render of 1,000 silos, under the hub's config lock.
    _silo_keys: dict[HubRef, dict[str, tuple[str | None, str | None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._syncs = Coalescer(self._render_now)

    def config_lock(self, hub: HubRef) -> asyncio.Lock:
        return self._config_locks.setdefault(hub, asyncio.Lock())

    def forget(self, hub: HubRef) -> None:
        """The hub is gone: nothing of it stays in memory."""
        for book in (self.config_written_at, self.rendered_user_keys, self.written_main, self.digests,
                     self.system_users, self.reload_asked, self.applied, self.snapshots, self._config_locks,
                     self._leaf_specs, self._silo_keys):
            book.pop(hub, None)

    def lacks_user(self, hub: HubRef, key: str) -> bool:
        """Whether the config this process last wrote for the hub misses this silo or FleetUser credential (or
        it has written none yet). Answered from memory: a resync of a thousand unchanged SiloLeaves then reads
        nothing, where reading the hub's ConfigMap (a thousand users) each time cost megabytes per leaf."""
        known = self.rendered_user_keys.get(hub)
        return known is None or key not in known

    async def sync(self, namespace: str, hub_name: str, leaves: LeafIndex) -> bool:
        """Re-render a hub after its set of silos changed. False if the hub does not exist. Many SiloLeaves
        asking at once (start-up, a GitOps sync of a thousand silos) share one render."""
        self._leaf_index = leaves
        return await self._syncs.run(HubRef(hub_name, namespace))

    async def _render_now(self, hub: HubRef) -> bool:
        body = await self.kube.get("FleetHub", hub.namespace, hub.name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return False
        await self.apply(body, FleetHubSpec.model_validate(body.get("spec") or {}), self._leaf_index, reapply=False)
        return True

    def _silo_users(self, hub: HubRef, leaves: LeafIndex, secrets: dict[str, dict[str, str]]) -> tuple[SiloUser, ...]:
        mine = [leaf for (namespace, _name), bodies in list(leaves.items()) if namespace == hub.namespace
                for leaf in bodies]
        known = self._leaf_specs.get(hub, {})
        parsed = self._leaf_specs[hub] = {}
        for leaf in mine:
            uid, generation = leaf["metadata"]["uid"], leaf["metadata"].get("generation", 0)
            cached = known.get(uid)
            parsed[uid] = cached if cached and cached[0] == generation else (generation, _valid_spec(leaf))
        known_keys = self._silo_keys.get(hub, {})
        keys = self._silo_keys[hub] = {}

        def key_of(secret: str) -> str | None:
            data = secrets.get(secret) or {}
            cached = known_keys.get(secret)
            if cached is None or cached[0] != data.get(SEED_KEY):
                cred = Credential.from_secret(data)
                cached = (data.get(SEED_KEY), cred.public_key if cred else None)
            keys[secret] = cached
            return cached[1]

        return silo_users(hub, mine, key_of, lambda leaf: parsed[leaf["metadata"]["uid"]][1])

    async def apply(self, body: dict[str, Any], spec: FleetHubSpec, leaves: LeafIndex, *,
                    reapply: bool = True) -> dict[str, str]:
        """Render and server-side-apply everything the hub owns (with `reapply` False, only what differs from
        what this process last applied). Returns the hashes for status."""
        meta = body["metadata"]
        hub = HubRef(meta["name"], meta["namespace"])
        async with self.config_lock(hub):
            operator, system = await ensure_hub_auth(self.kube, hub, body)
            secrets = await self.credentials.known(hub.namespace)
            users = HubUsers(operator=(operator.user, operator.public_key), system=(system.user, system.public_key),
                             silos=self._silo_users(hub, leaves, secrets),
                             fleet_users=await fleet_users(self.kube, hub, secrets))
            try:
                conf = render_hub_conf(hub, spec, users)
            except HubConfTooLarge as exc:
                raise NotReady("HubConfigTooLarge", str(exc)) from exc
            rhash = restart_hash(hub, spec)
            # nats.conf carries the hash of the user parts, so it alone tells whether anything changed. A re-render
            # for a silo trusts what this process last wrote; the hub's own handlers read what is there (drift).
            main_hash, existed = conf_hash(conf.main), True
            if reapply or hub not in self.written_main:
                current = await self.kube.get("ConfigMap", hub.namespace, hub.config_map)
                existed = current is not None
                changed = current is None or conf.main not in ((current.get("data") or {}).values())
            else:
                changed = self.written_main[hub] != main_hash
            if changed:
                # Taken before the write: no server can load the new config earlier than this.
                self.config_written_at[hub] = datetime.now(UTC)
            applied = self.applied.setdefault(hub, {})
            for manifest in render_hub_manifests(hub, spec, conf, rhash):
                manifest["metadata"].setdefault("ownerReferences", [owner_reference(body)])
                key, digest = f"{manifest['kind']}/{manifest['metadata']['name']}", _digest(manifest)
                # A re-render for a silo rewrites only what changed (one user part and nats.conf), not 1.5 MB;
                # the hub's own handlers re-apply everything, which also repairs drift.
                if reapply or applied.get(key) != digest:
                    await self.kube.apply(manifest)
                    applied[key] = digest
            self.rendered_user_keys[hub] = users.keys
            self.written_main[hub] = main_hash
            self.digests[hub], self.system_users[hub] = conf.digest, system
            if changed and existed:
                await _nudge_servers(self.kube, hub, main_hash)
        return {"configHash": main_hash, "restartHash": rhash}

    async def _reload_missed(self, hub: HubRef, servers: list[ServerSnapshot]) -> None:
        """Ask each server that missed the last config change (logic.hub_status.missed_reload) to reload, at most
        once per RELOAD_GRACE: a server whose files do not load stays ReloadPending, its error in the log."""
        asked = self.reload_asked.setdefault(hub, {})
        now = time.monotonic()
        for snap in servers:
            if now - asked.get(snap.pod, -math.inf) < RELOAD_GRACE.total_seconds():
                continue
            asked[snap.pod] = now
            try:
                await self.connections.request_reload(hub, self.system_users[hub], snap.varz["server_id"])
            except (HubNotReachable, ReloadRefused) as exc:
                log.warning("hub %s: %s still runs an older config; asking it to reload failed: %s", hub, snap.pod, exc)
            else:
                log.warning("hub %s: %s still ran an older config %.0f s after the write (its reloader missed the "
                            "change); asked it to reload", hub, snap.pod, RELOAD_GRACE.total_seconds())

    async def observe(self, body: dict[str, Any], spec: FleetHubSpec, hashes: dict[str, str]) -> dict[str, Any]:
        """Status fields and conditions from the servers, plus config bookkeeping."""
        meta = body["metadata"]
        hub = HubRef(meta["name"], meta["namespace"])
        status = body.get("status") or {}
        now = datetime.now(UTC)
        # The write time this process saw; after a restart, the one status kept from before.
        changed_at = self.config_written_at.get(hub) or parse_time(status.get("configChangedAt")) or now
        pods = await _hub_pods(self.kube, hub)
        targets = [(p["metadata"]["name"], p["status"]["podIP"]) for p in pods
                   if p.get("status", {}).get("podIP") and not p["metadata"].get("deletionTimestamp")]
        snapshots = await scrape_all(sorted(targets), spec.ports.monitoring)
        # A server that answers /healthz but whose pod is not Ready (a sidecar down, say) is not counted.
        not_ready = {p["metadata"]["name"] for p in pods if not _pod_ready(p)}
        for snap in snapshots:
            if snap.pod in not_ready and snap.healthy:
                snap.healthy, snap.error = False, "pod not Ready (see kubectl describe pod)"
        self.snapshots[hub] = snapshots
        sts = await self.kube.get("StatefulSet", hub.namespace, hub.statefulset) or {}
        sts_status = sts.get("status", {})
        rolling = bool(sts) and (
            sts_status.get("observedGeneration", 0) < sts.get("metadata", {}).get("generation", 0)
            or sts_status.get("updateRevision") != sts_status.get("currentRevision")
        )
        digest = self.digests.get(hub)
        await self._reload_missed(hub, missed_reload(snapshots, digest, changed_at, now, rolling))
        fields, conds = hub_status(spec.replicas, snapshots, changed_at, rolling, digest)
        fields.update(hashes, configChangedAt=changed_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                      clientUrl=hub.client_url(spec.ports.client),
                      leafnodeUrl=hub.leafnode_url(spec.leafnodes.advertise, spec.ports.leafnodes))
        return {"fields": fields, "conditions": conds}
