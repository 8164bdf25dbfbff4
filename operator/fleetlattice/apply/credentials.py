"""Generated credentials kept in Secrets: read one, or make it once. Shared by every kind that owns an NKey."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from fleetlattice.clients.kube import Kube
from fleetlattice.logic.conditions import ownership
from fleetlattice.logic.credentials import Credential
from fleetlattice.render.names import PART_OF

MANAGED = f"app.kubernetes.io/managed-by={PART_OF}"
# How old a namespace's LIST may be for a resync's read. A resync used to GET each Secret afresh: at a thousand
# silos two GETs per SiloLeaf every 30 s, 11 of the 33 requests per silo of a cold start (audit log).
LISTING_MAX_AGE = 25.0


@dataclass
class _Listing:
    """What one LIST of a namespace's Secrets (and this process's writes since) says they hold."""

    started: float
    task: asyncio.Future[None] | None = None
    data: dict[str, dict[str, str]] = field(default_factory=dict)


class CredentialSecrets:
    """Read-or-generate of NKey Secrets, one at a time per Secret.

    What each Secret holds is known from one LIST per namespace and from this process's own writes, so a cold
    start of a thousand silos reads no Secret one by one. A resync asks for a recent read (`reread`): the
    namespace is listed again when its LIST is older than LISTING_MAX_AGE, one LIST for every resync of that
    namespace, and that is how a deleted Secret, the way to rotate a credential, is noticed."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._listings: dict[str, _Listing] = {}
        # (namespace, name) -> (when, data) of this process's writes not yet older than its namespace's LIST
        self._written: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    def _lock(self, namespace: str, secret: str) -> asyncio.Lock:
        """A create handler and a resync timer of one object can run at once, and two generated credentials
        would rotate it (leaf roll, hub reload)."""
        return self._locks.setdefault((namespace, secret), asyncio.Lock())

    def forget(self, namespace: str, secret: str) -> None:
        self._locks.pop((namespace, secret), None)
        self._written.pop((namespace, secret), None)
        if namespace in self._listings:
            self._listings[namespace].data.pop(secret, None)

    def _remember(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """This process's own write: newer than any LIST running now, so that LIST's answer must not drop it."""
        listing = self._listings.get(namespace)
        if listing is not None:
            listing.data[name] = data
        self._written[(namespace, name)] = (time.monotonic(), data)

    async def _listed(self, namespace: str, max_age: float | None) -> dict[str, dict[str, str]]:
        """The namespace's Secrets, from a LIST no older than `max_age` seconds (None: any age)."""
        listing = self._listings.get(namespace)
        stale = listing is not None and listing.task is not None and listing.task.done() and (
            max_age is not None and time.monotonic() - listing.started > max_age)
        if listing is None or stale:
            listing = _Listing(started=time.monotonic())
            listing.task = asyncio.ensure_future(self._list(namespace, listing))
            self._listings[namespace] = listing
        assert listing.task is not None
        try:
            await asyncio.shield(listing.task)
        except Exception:
            if self._listings.get(namespace) is listing:
                del self._listings[namespace]  # the next caller lists again
            raise
        return listing.data

    async def _list(self, namespace: str, listing: _Listing) -> None:
        data = {s["metadata"]["name"]: s.get("data") or {}
                for s in await self.kube.list("Secret", namespace, labels=MANAGED)}
        # Written by this process while the LIST ran: the write is the newer truth.
        for (ns, name), (when, written) in list(self._written.items()):
            if ns == namespace:
                if when >= listing.started:
                    data[name] = written
                else:
                    del self._written[(ns, name)]
        listing.data = data

    async def known(self, namespace: str) -> dict[str, dict[str, str]]:
        """What the namespace's managed Secrets hold (name -> data), from the last LIST and this process's writes
        since: a hub render reads every silo's public key here, not from a LIST of a thousand Secrets each time.
        A deleted Secret drops out when a resync lists the namespace again."""
        return await self._listed(namespace, None)

    async def _read(self, namespace: str, name: str, reread: bool) -> tuple[dict[str, str] | None, bool]:
        """The Secret's data (None when it does not exist) and whether that absence is only what the namespace's
        LIST said, in which case the Secret is created, never applied over one made since."""
        known = await self._listed(namespace, LISTING_MAX_AGE if reread else None)
        return known.get(name), name not in known

    async def ensure(self, owner: dict[str, Any], secret_name: str, user: str, labels: dict[str, str],
                     extra: dict[str, str] | None = None, namespace: str | None = None,
                     reread: bool = False) -> Credential:
        """Generate an NKey once and keep it in `secret_name` (in `namespace`, default the owner's), owned by
        `owner`, with `extra` Secret.data beside it. Deleting the Secret rotates it: a new one is made here and
        the hub (or the leaf) takes the new public key. A Secret of an older release (a password, no seed) is
        replaced the same way: that is the migration, and server-side apply drops the keys this manager no
        longer writes."""
        namespace = namespace or owner["metadata"]["namespace"]
        async with self._lock(namespace, secret_name):
            data, unseen = await self._read(namespace, secret_name, reread)
            cred, wanted = self._wanted(data, user, extra)
            if unseen:
                secret = self._secret(owner, secret_name, namespace, labels, wanted)
                if await self.kube.create(secret) is not None:
                    self._remember(namespace, secret_name, wanted)
                    return cred
                data = ((await self.kube.get("Secret", namespace, secret_name)) or {}).get("data")  # made since
                cred, wanted = self._wanted(data, user, extra)
            if data != wanted:
                await self.kube.apply(self._secret(owner, secret_name, namespace, labels, wanted))
                self._remember(namespace, secret_name, wanted)
        return cred

    @staticmethod
    def _wanted(data: dict[str, str] | None, user: str,
                extra: dict[str, str] | None) -> tuple[Credential, dict[str, str]]:
        """The credential to keep (the stored one, else a new one) and the Secret.data that holds it."""
        cred = Credential.from_secret(data or {})
        if cred is None or cred.user != user:
            cred = Credential.generate(user)
        return cred, {**cred.secret_data(), **(extra or {})}

    @staticmethod
    def _secret(owner: dict[str, Any], name: str, namespace: str, labels: dict[str, str],
                data: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, "labels": labels, **ownership(owner, namespace)},
                "data": data}
