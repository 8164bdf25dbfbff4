"""Generated credentials kept in Secrets: read one, or make it once. Shared by every kind that owns an NKey."""

from __future__ import annotations

import asyncio
from typing import Any

from fleetlattice.clients.kube import Kube
from fleetlattice.logic.conditions import ownership
from fleetlattice.logic.credentials import Credential


class CredentialSecrets:
    """Read-or-generate of NKey Secrets, one at a time per Secret."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def _lock(self, namespace: str, secret: str) -> asyncio.Lock:
        """A create handler and a resync timer of one object can run at once, and two generated credentials
        would rotate it (leaf roll, hub reload)."""
        return self._locks.setdefault((namespace, secret), asyncio.Lock())

    def forget(self, namespace: str, secret: str) -> None:
        self._locks.pop((namespace, secret), None)

    async def ensure(self, owner: dict[str, Any], secret_name: str, user: str, labels: dict[str, str],
                     extra: dict[str, str] | None = None, namespace: str | None = None) -> Credential:
        """Generate an NKey once and keep it in `secret_name` (in `namespace`, default the owner's), owned by
        `owner`, with `extra` Secret.data beside it. Deleting the Secret rotates it: a new one is made here and
        the hub (or the leaf) takes the new public key. A Secret of an older release (a password, no seed) is
        replaced the same way: that is the migration, and server-side apply drops the keys this manager no
        longer writes."""
        namespace = namespace or owner["metadata"]["namespace"]
        async with self._lock(namespace, secret_name):
            secret = await self.kube.get("Secret", namespace, secret_name)
            data = (secret or {}).get("data", {})
            cred = Credential.from_secret(data)
            if cred is None or cred.user != user:
                cred = Credential.generate(user)
            wanted = {**cred.secret_data(), **(extra or {})}
            if secret is None or data != wanted:
                await self.kube.apply({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "Opaque",
                    "metadata": {"name": secret_name, "namespace": namespace, "labels": labels,
                                 **ownership(owner, namespace)},
                    "data": wanted,
                })
        return cred
