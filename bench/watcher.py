"""When each object first met a condition, as a Kubernetes watch delivers it to a client (a thread,
like `kubectl get -w`), on this process's monotonic clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from .harness import Env, async_wait_for


class FirstSeen(threading.Thread):
    def __init__(self, env: Env, namespace: str, plural: str, predicate: Callable[[dict[str, Any]], bool]) -> None:
        super().__init__(daemon=True, name=f"watch-{plural}")
        self.env, self.namespace, self.plural, self.predicate = env, namespace, plural, predicate
        self.seen: dict[str, float] = {}
        self.objects: dict[str, dict[str, Any]] = {}  # each object as it was when first seen meeting it
        self._stop = threading.Event()
        self._watch = watch.Watch()

    def _record(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name not in self.seen and self.predicate(obj):
            self.seen[name] = time.perf_counter()
            self.objects[name] = obj

    def run(self) -> None:
        group, version = "fleet.lattice.dev", "v1alpha1"
        while not self._stop.is_set():
            listing = self.env.custom.list_namespaced_custom_object(group, version, self.namespace, self.plural)
            for obj in listing["items"]:
                self._record(obj)
            try:
                for event in self._watch.stream(self.env.custom.list_namespaced_custom_object, group, version,
                                                self.namespace, self.plural, timeout_seconds=60,
                                                resource_version=listing["metadata"]["resourceVersion"]):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(event["object"])
                    if self._stop.is_set():
                        return
            except ProtocolError:
                continue  # the API server ended the watch early: list again
            except ApiException as error:
                if error.status != 410:  # expired resourceVersion: list again
                    raise

    def stop(self) -> None:
        self._stop.set()
        self._watch.stop()

    async def wait_all(self, names: Iterable[str], timeout: float) -> None:  # noqa: ASYNC109 -- a deadline
        wanted = set(names)

        async def done() -> bool:
            if not self.is_alive():
                raise RuntimeError("watch thread died")
            return wanted <= self.seen.keys()

        await async_wait_for(done, timeout, f"{len(wanted)} {self.plural}", interval=0.2)
