"""Generated credentials kept in Secrets: read one, or make it once. Shared by every kind that owns an NKey."""

from __future__ import annotations

import asyncio
from typing import Any

from fleetlattice.clients.kube import Kube
from fleetlattice.logic.conditions import ownership
from fleetlattice.logic.credentials import Credential
from fleetlattice.render.names import PART_OF

MANAGED = f"app.kubernetes.io/managed-by={PART_OF}"


class CredentialSecrets:
    """Read-or-generate of NKey Secrets, one at a time per Secret.

    What each Secret holds is known from one LIST per namespace (the first time a credential there is needed)
    and from this process's own writes, so a cold start of a thousand silos reads no Secret one by one. A
    resync asks for a fresh read (`reread`): that is how a deleted Secret, the way to rotate a credential, is
    noticed."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._known: dict[tuple[str, str], dict[str, str]] = {}
        self._listed: dict[str, asyncio.Task[None]] = {}

    def _lock(self, namespace: str, secret: str) -> asyncio.Lock:
        """A create handler and a resync timer of one object can run at once, and two generated credentials
        would rotate it (leaf roll, hub reload)."""
        return self._locks.setdefault((namespace, secret), asyncio.Lock())

    def forget(self, namespace: str, secret: str) -> None:
        self._locks.pop((namespace, secret), None)
        self._known.pop((namespace, secret), None)

    async def _list_once(self, namespace: str) -> None:
        async def listing() -> None:
            for secret in await self.kube.list("Secret", namespace, labels=MANAGED):
                self._known.setdefault((namespace, secret["metadata"]["name"]), secret.get("data") or {})

        if namespace not in self._listed:
            self._listed[namespace] = asyncio.ensure_future(listing())
        try:
            await asyncio.shield(self._listed[namespace])
        except Exception:
            self._listed.pop(namespace, None)  # the next caller lists again
            raise

    async def _read(self, namespace: str, name: str, reread: bool) -> tuple[dict[str, str] | None, bool]:
        """The Secret's data (None when it does not exist) and whether that absence is only what the namespace's
        LIST said, in which case the Secret is created, never applied over one made since."""
        if not reread:
            await self._list_once(namespace)
            return self._known.get((namespace, name)), (namespace, name) not in self._known
        secret = await self.kube.get("Secret", namespace, name)
        if secret is None:
            self._known.pop((namespace, name), None)
            return None, False
        self._known[(namespace, name)] = secret.get("data") or {}
        return self._known[(namespace, name)], False

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
                    self._known[(namespace, secret_name)] = wanted
                    return cred
                data, _ = await self._read(namespace, secret_name, reread=True)  # made since the LIST
                cred, wanted = self._wanted(data, user, extra)
            if data != wanted:
                await self.kube.apply(self._secret(owner, secret_name, namespace, labels, wanted))
                self._known[(namespace, secret_name)] = wanted
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
