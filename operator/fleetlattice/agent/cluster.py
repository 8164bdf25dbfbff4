"""The builtin plan's Kubernetes edge: server-side apply, get and delete of any kind in the silo's
cluster. The sync client runs in worker threads, so the agent's event loop (acks, heartbeats) never
waits on the API server. Kinds are resolved by API discovery: manifests may hold any kind, CRDs too."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from kubernetes.dynamic.resource import Resource

from fleetlattice.agent.manifests import AGENT_NAME, Manifest
from fleetlattice.clients.kube import load_config

# Where a namespaced object without metadata.namespace goes; templates should name their namespace.
DEFAULT_NAMESPACE = "default"


class Cluster:
    def __init__(self, kubeconfig: str | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._client: DynamicClient | None = None
        self._client_lock = threading.Lock()

    def _dynamic(self) -> DynamicClient:
        """Connect on first use (discovery is network I/O), in the calling worker thread."""
        with self._client_lock:
            if self._client is None:
                if self._kubeconfig:
                    api = config.new_client_from_config(config_file=self._kubeconfig)
                else:
                    load_config()
                    api = client.ApiClient()
                self._client = DynamicClient(api)
            return self._client

    def _locate(self, manifest: Manifest) -> tuple[Resource, str | None]:
        resource = self._dynamic().resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        namespace = (manifest["metadata"].get("namespace") or DEFAULT_NAMESPACE) if resource.namespaced else None
        return resource, namespace

    def _apply(self, manifest: Manifest) -> None:
        resource, namespace = self._locate(manifest)
        # Forced: these fields are the agent's; a re-install overwrites another manager's conflicting value.
        self._dynamic().server_side_apply(
            resource, body=manifest, namespace=namespace, field_manager=AGENT_NAME, force_conflicts=True
        )

    def _get(self, manifest: Manifest) -> Manifest | None:
        resource, namespace = self._locate(manifest)
        try:
            return self._dynamic().get(resource, name=manifest["metadata"]["name"], namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def _delete(self, manifest: Manifest) -> None:
        resource, namespace = self._locate(manifest)
        body: dict[str, Any] = {"propagationPolicy": "Foreground"}  # gone means its pods are gone too
        with contextlib.suppress(NotFoundError):
            self._dynamic().delete(resource, name=manifest["metadata"]["name"], namespace=namespace, body=body)

    async def apply(self, manifest: Manifest) -> None:
        await asyncio.to_thread(self._apply, manifest)

    async def get(self, manifest: Manifest) -> Manifest | None:
        return await asyncio.to_thread(self._get, manifest)

    async def delete(self, manifest: Manifest) -> None:
        await asyncio.to_thread(self._delete, manifest)
