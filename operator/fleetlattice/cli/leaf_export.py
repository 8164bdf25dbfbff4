"""`fleetlattice leaf export`: the bundle an External silo applies in its own cluster."""

from __future__ import annotations

import base64
import sys

import yaml

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.siloleaf import SiloLeafSpec
from fleetlattice.clients.kube import Kube
from fleetlattice.logic.credentials import Credential
from fleetlattice.render.leaf import render_leaf_bundle
from fleetlattice.render.names import HubRef, SiloRef


class ExportError(Exception):
    """Something the user must fix first; the message says what."""


async def export_bundle(kube: Kube, namespace: str, name: str, target_namespace: str | None) -> str:
    leaf = await kube.get("SiloLeaf", namespace, name)
    if leaf is None:
        raise ExportError(f"SiloLeaf {namespace}/{name} not found (kubectl get siloleaves -n {namespace})")
    spec = SiloLeafSpec.model_validate(leaf["spec"])
    target_namespace = target_namespace or spec.leaf.namespace or namespace
    hub = await kube.get("FleetHub", namespace, spec.hub)
    if hub is None:
        raise ExportError(f"FleetHub {namespace}/{spec.hub} of silo {spec.silo} not found")
    hub_spec = FleetHubSpec.model_validate(hub.get("spec") or {})
    silo = SiloRef(spec.silo)
    cred, local = [Credential.from_secret(((await kube.get("Secret", namespace, name)) or {}).get("data", {}))
                   for name in (silo.credentials_secret, silo.local_secret)]
    if cred is None or local is None:
        raise ExportError(f"the NKeys of silo {spec.silo} are not generated yet; is the operator running?")
    url = HubRef(spec.hub, namespace).leafnode_url(hub_spec.leafnodes.advertise, hub_spec.ports.leafnodes)
    if not hub_spec.leafnodes.advertise:
        print(f"warning: FleetHub {spec.hub} sets no spec.leafnodes.advertise, so the bundle dials the in-cluster "
              "leafnode Service, which another cluster cannot reach", file=sys.stderr)
    hub_ca = None
    if hub_spec.tls.enabled and hub_spec.tls.secret_name:
        tls = await kube.get("Secret", namespace, hub_spec.tls.secret_name) or {}
        hub_ca = base64.b64decode(tls.get("data", {}).get("ca.crt", "")).decode() or None
    manifests = render_leaf_bundle(spec, target_namespace, url, cred.seed, local, hub_ca)
    return yaml.safe_dump_all(manifests, sort_keys=False)
