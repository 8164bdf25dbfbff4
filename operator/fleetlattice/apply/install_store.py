"""The SiloInstall status store: every state-machine step is a transform of the status this process last
wrote, stored by server-side apply of .status under a field manager of its own, one writer per install."""

from __future__ import annotations

import asyncio
import copy
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from fleetlattice.api.defaults import FIELD_MANAGER
from fleetlattice.api.siloinstall import FINAL_PHASES, SiloInstallSpec, SiloInstallStatus
from fleetlattice.clients.kube import Kube
from fleetlattice.clients.metrics import INSTALL_SECONDS, INSTALL_TRANSITIONS
from fleetlattice.logic.conditions import Cond, Notice, merge_conditions
from fleetlattice.logic.install_state import dump, mark_published, transition_notices, unpublished

# Last-written copies kept, one per install: a fleet's worth.
WRITTEN_COPIES = 4096
# The one owner of SiloInstall status (apply of the rest of the object is FIELD_MANAGER's).
STATUS_MANAGER = f"{FIELD_MANAGER}-install-status"
Transform = Callable[[SiloInstallStatus, SiloInstallSpec, dict[str, Any]], Awaitable[SiloInstallStatus | None]]
# Puts an attempt's request on the bus (InstallRequests); raises if JetStream did not store it.
Publish = Callable[[SiloInstallStatus, SiloInstallSpec], Awaitable[None]]
# Posts a Kubernetes Event about the object (the handlers' layer supplies kopf's poster); never raises.
Notify = Callable[[dict[str, Any], Notice], None]


def _observe_transition(old: SiloInstallStatus, new: SiloInstallStatus) -> None:
    if old.phase == new.phase:
        return
    INSTALL_TRANSITIONS.labels(old.phase, new.phase).inc()
    if new.phase in FINAL_PHASES and new.started_at and new.completed_at:
        INSTALL_SECONDS.labels(new.phase).observe((new.completed_at - new.started_at).total_seconds())


class InstallStore:
    """Read-transform-write of one SiloInstall's status, serialised per install in this process.

    Written by server-side apply, not by a PUT guarded by resourceVersion: kopf's own patches of the object
    (progress annotations, finalizers) change its resourceVersion, and at a thousand silos most PUTs failed
    with 409 and cost a GET and a second PUT (bench/findings/kopf-at-a-thousand-silos.md). The apply is not
    forced: if anyone else changed a status field since this copy (a `kubectl edit --subresource=status`, an
    older release's PUT), the API server answers 409 and the change starts again from a fresh read, forced
    then, as this store owns install status."""

    def __init__(self, kube: Kube, notify: Notify | None = None) -> None:
        self.kube = kube
        self.notify = notify
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # The object as this process's last status write returned it: the next change of that install starts
        # from it instead of a GET (a report costs one request, not two). Stale only when another field manager
        # wrote its status since, which the apply turns into a 409 and a fresh read. Bounded: oldest dropped first.
        self._written: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        # Installs this process has written (dropped when they go): for one not in it, a caller's recent copy
        # (kopf's body) is as good a start as a GET, as nobody else writes install status; for one in it whose
        # copy was dropped, kopf's body may predate this process's own write, so it is read.
        self._wrote: set[tuple[str, str]] = set()

    def forget(self, namespace: str, name: str) -> None:
        """The SiloInstall is gone: its lock and copy go too (a map that only grows is a leak at fleet size)."""
        self._written.pop((namespace, name), None)
        self._wrote.discard((namespace, name))
        lock = self._locks.get((namespace, name))
        if lock is not None and not lock.locked():
            del self._locks[(namespace, name)]

    def _remember(self, key: tuple[str, str], body: dict[str, Any]) -> None:
        self._wrote.add(key)
        self._written[key] = body
        self._written.move_to_end(key)
        while len(self._written) > WRITTEN_COPIES:
            self._written.popitem(last=False)

    async def idle(self, namespace: str, name: str) -> None:
        """Returns once no change of the install is being made (none may start before the caller's next step)."""
        lock = self._locks.get((namespace, name))
        if lock is not None and lock.locked():
            async with lock:
                pass

    def cached(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as this store last wrote it, if it still holds that copy."""
        return self._written.get((namespace, name))

    async def current(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as this store last wrote it (it is the one writer of install status), else as the API has
        it now (None when gone)."""
        return self._written.get((namespace, name)) or await self.kube.get("SiloInstall", namespace, name)

    async def update(self, namespace: str, name: str, transform: Transform,
                     conditions: Callable[[SiloInstallStatus], list[Cond]] | None = None,
                     seen: dict[str, Any] | None = None, publish: Publish | None = None) -> SiloInstallStatus | None:
        """Returns the stored status, or None when nothing changed (no write) or the object is gone.
        `seen` is a recent copy of the object (kopf's body): when the transform changes nothing on it,
        no read is made at all, which is what keeps the hub's ticker over a thousand installs cheap; for an install
        this process has not written yet, it is where the change starts (no GET at a cold start). A copy that is
        stale after all (another manager wrote status) is a 409 and a fresh read.

        With `publish`, an attempt the transform begins (or one an earlier release stored Pending) is published
        before the write and stored Requested: one status write where reserve-then-publish took two. The lock is
        held throughout, so the agent's reports of it wait for this write (InstallStore is their way in too);
        after a crash in between, the same attempt gets the same requestId, which JetStream and the agent's
        ledger drop as a duplicate, and its reports are early, not late (logic.install_state.apply_report)."""
        key = (namespace, name)
        async with self._locks.setdefault(key, asyncio.Lock()):
            if seen is not None and await _next_status(seen, transform, conditions, publish) is None:
                return None
            body = self._written.pop(key, None)
            if body is None and seen is not None and key not in self._wrote:
                body = copy.deepcopy(seen)
            force = False
            for _ in range(5):
                if body is None:
                    body = await self.kube.get("SiloInstall", namespace, name)
                if body is None:
                    return None
                change = await _next_status(body, transform, conditions, publish)
                if change is None:
                    self._remember(key, body)
                    return None
                status, new, body["status"], reserved = change
                if reserved is not None and publish is not None:
                    await publish(reserved, SiloInstallSpec.model_validate(body["spec"]))
                try:
                    self._remember(key, await self.kube.apply_status(body, STATUS_MANAGER, force=force))
                except ApiException as exc:
                    if exc.status in (404, 409):  # gone, or written by someone else since this copy: read again
                        body, force = None, exc.status == 409
                        continue
                    raise
                _observe_transition(status, new)
                if self.notify is not None:
                    for notice in transition_notices(status, new):
                        self.notify(body, notice)
                return new
            raise RuntimeError(f"SiloInstall {namespace}/{name}: status kept changing underneath, giving up")


Change = tuple[SiloInstallStatus, SiloInstallStatus, dict[str, Any], SiloInstallStatus | None]


async def _next_status(body: dict[str, Any], transform: Transform,
                       conditions: Callable[[SiloInstallStatus], list[Cond]] | None,
                       publish: Publish | None) -> Change | None:
    """(old status, new status, new stored status, attempt to publish first) after `transform`, or None if the
    stored status stays."""
    status = SiloInstallStatus.model_validate(body.get("status") or {})
    spec = SiloInstallSpec.model_validate(body["spec"])
    new = await transform(status, spec, body) or status
    reserved = None
    if publish is not None and unpublished(new):
        reserved, new = new, mark_published(new, new.request_id) or new
    old = body.get("status") or {}
    stored = dump(new)
    stored["conditions"] = merge_conditions(old.get("conditions"), conditions(new) if conditions else [],
                                            body["metadata"].get("generation"))
    return None if stored == old else (status, new, stored, reserved)
