"""The Kubernetes edge: the sync client, run in worker threads so the event loop never blocks.

Only the calls the operator makes: server-side apply (of objects and of status), an annotation patch, get,
list (kopf posts the Events). Paths come from a fixed table instead of API discovery, which costs round-trips
at start-up.
The chart's RBAC grants exactly what these calls need: tests/unit/test_chart.py derives it from their call
sites (a literal kind per call, METHOD_VERBS below) and fails on any grant too many or too few."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from fleetlattice.api.defaults import FIELD_MANAGER, USER_AGENT
from fleetlattice.api.kinds import API_VERSION, KINDS

REQUEST_TIMEOUT = 30


@dataclass(frozen=True)
class Resource:
    api_version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [prefix]
        if namespace:
            parts += ["namespaces", namespace]
        parts.append(self.plural)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/".join(parts)


RESOURCES: dict[str, Resource] = {
    "ConfigMap": Resource("v1", "configmaps"),
    "Secret": Resource("v1", "secrets"),
    "Service": Resource("v1", "services"),
    "Pod": Resource("v1", "pods"),
    "StatefulSet": Resource("apps/v1", "statefulsets"),
    "Deployment": Resource("apps/v1", "deployments"),
    "PodDisruptionBudget": Resource("policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": Resource("networking.k8s.io/v1", "networkpolicies"),
    **{k.kind: Resource(API_VERSION, k.plural) for k in KINDS},
}


# The RBAC verbs each call is authorized as. A server-side apply that creates the object is authorized as
# create as well as patch; a merge patch never creates (404 when the object is gone).
METHOD_VERBS: dict[str, tuple[str | None, frozenset[str]]] = {
    "apply": (None, frozenset({"create", "patch"})),
    "create": (None, frozenset({"create"})),
    "annotate": (None, frozenset({"patch"})),
    "get": (None, frozenset({"get"})),
    "list": (None, frozenset({"list"})),
    "apply_status": ("status", frozenset({"patch"})),
    "patch_status": ("status", frozenset({"patch"})),
    "delete": (None, frozenset({"delete"})),
}


def load_config(kubeconfig: str | None = None) -> None:
    """In cluster when a service account is mounted, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)


# Calls in flight at once. The sync client runs each in a thread: asyncio's default pool has cpu+4 threads
# (6 here) and urllib3 keeps cpu*5 connections, so 100 installs finishing together queued their status writes
# six at a time (bench/ installs at n=100, done -> Succeeded p50: 10.7 s with 6, 7.6 s with 32).
MAX_CONCURRENT_CALLS = 32


class Kube:
    """Async facade over one ApiClient. Every call runs in a thread of its own pool."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        if api_client is None:
            configuration = client.Configuration.get_default_copy()
            configuration.connection_pool_maxsize = MAX_CONCURRENT_CALLS
            api_client = client.ApiClient(configuration)
        self.api = api_client
        # Names the operator in API server audit logs (kopf's own requests say kopf/<version>).
        self.api.user_agent = USER_AGENT
        self._threads = ThreadPoolExecutor(MAX_CONCURRENT_CALLS, thread_name_prefix="kube")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            method_, url, headers, payload, post = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method_, url, header_params=headers, body=payload, post_params=post,
                                         _request_timeout=REQUEST_TIMEOUT)
            data = response.read()
            if not 200 <= response.status <= 299:
                raise ApiException(status=response.status, reason=response.reason, body=data.decode(errors="replace"))
            return json.loads(data) if data else {}

        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator's field manager; forced, since these fields are ours."""
        resource = RESOURCES[obj["kind"]]
        meta = obj["metadata"]
        return await self._call(
            "PATCH",
            resource.path(meta.get("namespace"), meta["name"]),
            body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    async def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create the object; None if one of that name exists already (which is left as it is)."""
        meta = obj["metadata"]
        try:
            return await self._call("POST", RESOURCES[obj["kind"]].path(meta.get("namespace")), body=obj)
        except ApiException as error:
            if error.status == 409:
                return None
            raise

    async def annotate(self, kind: str, namespace: str, name: str, annotations: dict[str, str]) -> bool:
        """Merge-patch annotations onto an existing object. False if it is gone: unlike an apply, this never
        creates one, so it needs no create permission."""
        try:
            await self._call("PATCH", RESOURCES[kind].path(namespace, name),
                             body={"metadata": {"annotations": annotations}},
                             content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", RESOURCES[kind].path(namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str | None, *, labels: str | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", labels)] if labels else []
        return (await self._call("GET", RESOURCES[kind].path(namespace), query=query)).get("items", [])

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """True if it was there. Only for what no owner reference covers: a SiloLeaf's children in another
        namespace."""
        try:
            await self._call("DELETE", RESOURCES[kind].path(namespace, name), body={"propagationPolicy": "Background"})
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge-patch .status (what kopf does with a handler's `patch.status`; a None removes a field). False if
        the object is gone."""
        try:
            await self._call("PATCH", RESOURCES[kind].path(namespace, name, "status"), body={"status": status},
                             content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def apply_status(self, obj: dict[str, Any], manager: str, *, force: bool) -> dict[str, Any]:
        """Server-side apply of .status as `manager`, which owns the fields it sends: no resourceVersion, so
        kopf's writes to the object (annotations, finalizers) never make a status write fail. Without
        `force`, a field another manager changed since is a 409, which tells the caller its copy is stale."""
        meta = obj["metadata"]
        return await self._call(
            "PATCH",
            RESOURCES[obj["kind"]].path(meta["namespace"], meta["name"], "status"),
            body={"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                  "metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "status": obj["status"]},
            query=[("fieldManager", manager), *([("force", "true")] if force else [])],
            content_type="application/apply-patch+yaml",
        )
