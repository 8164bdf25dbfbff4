"""Derived names and URLs of a hub and a silo."""

from __future__ import annotations

from fleetlattice.render.names import HubRef, SiloRef

HUB = HubRef("eose-hub", "fleet")


def test_hub_names() -> None:
    assert (HUB.statefulset, HUB.config_map, HUB.pdb, HUB.auth_secret) == (
        "eose-hub",
        "eose-hub-config",
        "eose-hub",
        "eose-hub-auth",
    )
    assert (HUB.client_service, HUB.headless_service, HUB.leafnode_service, HUB.monitoring_service) == (
        "eose-hub",
        "eose-hub-headless",
        "eose-hub-leafnodes",
        "eose-hub-monitoring",
    )
    assert HUB.pod_host(2) == "eose-hub-2.eose-hub-headless.fleet.svc.cluster.local"


def test_hub_urls() -> None:
    assert HUB.client_url() == "nats://eose-hub.fleet.svc.cluster.local:4222"
    assert HUB.leafnode_url() == "nats://eose-hub-leafnodes.fleet.svc.cluster.local:7422"
    assert HUB.leafnode_url("hub.example.com:443") == "nats://hub.example.com:443"


def test_silo_names_and_labels() -> None:
    silo = SiloRef("ct-fac")
    assert (silo.credentials_secret, silo.leaf, silo.leaf_config_map) == (
        "siloleaf-ct-fac-credentials",
        "ct-fac-leaf",
        "ct-fac-leaf-config",
    )
    assert silo.labels["fleet.lattice.dev/silo"] == "ct-fac"
    assert silo.labels["app.kubernetes.io/component"] == "leaf"
    assert silo.selector.items() <= silo.labels.items()
    assert HUB.selector.items() <= HUB.labels.items()
