"""Names, labels and URLs of everything rendered for a hub or a silo: one place, so the render,
apply and status layers can never disagree about what an object is called."""

from __future__ import annotations

from dataclasses import dataclass

from fleetlattice.api import defaults
from fleetlattice.render.layout import HUB_USER_PARTS

PART_OF = "fleet-lattice"
SILO_LABEL = "fleet.lattice.dev/silo"
FLEET_USER_LABEL = "fleet.lattice.dev/fleet-user"
RESTART_HASH_ANNOTATION = "fleet.lattice.dev/restart-hash"
CONFIG_CHECKSUM_ANNOTATION = "fleet.lattice.dev/config-checksum"
PERMISSIONS_CHECKSUM_ANNOTATION = "fleet.lattice.dev/permissions-checksum"
# Set on running hub pods, never on their template: a config change then reaches them without a restart.
CONFIG_HASH_ANNOTATION = "fleet.lattice.dev/config-hash"
CLUSTER_DOMAIN = "svc.cluster.local"


def labels(instance: str, component: str) -> dict[str, str]:
    """Recommended Kubernetes labels shared by every object of one hub or one leaf."""
    return {
        "app.kubernetes.io/name": "nats",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": PART_OF,
    }


def selector_labels(instance: str, component: str) -> dict[str, str]:
    """The immutable subset used in selectors: never includes anything that may change later."""
    return {
        "app.kubernetes.io/name": "nats",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    }


@dataclass(frozen=True)
class HubRef:
    """A FleetHub by name and namespace, and the names of everything rendered for it."""

    name: str
    namespace: str

    @property
    def statefulset(self) -> str:
        return self.name

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"

    def users_config_map(self, part: int) -> str:
        return f"{self.name}-users-{part}"

    @property
    def config_maps(self) -> list[str]:
        """nats.conf's ConfigMap and those of the user parts it includes, in that order."""
        return [self.config_map, *(self.users_config_map(i) for i in range(HUB_USER_PARTS))]

    @property
    def client_service(self) -> str:
        return self.name

    @property
    def headless_service(self) -> str:
        return f"{self.name}-headless"

    @property
    def leafnode_service(self) -> str:
        return f"{self.name}-leafnodes"

    @property
    def monitoring_service(self) -> str:
        return f"{self.name}-monitoring"

    @property
    def pdb(self) -> str:
        return self.name

    @property
    def auth_secret(self) -> str:
        """Holds the operator and system users' NKey seeds; created by the apply layer."""
        return f"{self.name}-auth"

    @property
    def labels(self) -> dict[str, str]:
        return labels(self.name, "hub")

    @property
    def selector(self) -> dict[str, str]:
        return selector_labels(self.name, "hub")

    def service_host(self, service: str) -> str:
        return f"{service}.{self.namespace}.{CLUSTER_DOMAIN}"

    def pod_name(self, index: int) -> str:
        return f"{self.statefulset}-{index}"

    def pod_host(self, index: int) -> str:
        """Stable DNS name of one replica, through the headless Service."""
        return f"{self.pod_name(index)}.{self.service_host(self.headless_service)}"

    def client_url(self, client_port: int = defaults.CLIENT_PORT) -> str:
        return f"nats://{self.service_host(self.client_service)}:{client_port}"

    def leafnode_url(self, advertise: str | None = None, leafnode_port: int = defaults.LEAFNODE_PORT) -> str:
        """What leaves dial: the advertised host:port when set (leaves in other clusters),
        else the in-cluster leafnode Service."""
        if advertise:
            return f"nats://{advertise}"
        return f"nats://{self.service_host(self.leafnode_service)}:{leafnode_port}"


@dataclass(frozen=True)
class SiloRef:
    """A silo (the SiloLeaf's spec.silo) and the names of everything rendered for it."""

    silo: str

    @property
    def credentials_secret(self) -> str:
        """Holds the silo's NKey: `user`, `nkey` (public key), `seed` (what the leaf and tools sign with)."""
        return f"siloleaf-{self.silo}-credentials"

    @property
    def local_secret(self) -> str:
        """Holds the NKey of the silo's own clients (its agent, local apps) at its leaf's client port: same
        keys as the credentials Secret. It signs in nowhere but that leaf, so pods that mount it never hold
        the silo's hub identity."""
        return f"siloleaf-{self.silo}-local"

    @property
    def local_user(self) -> str:
        return f"{self.silo}-local"

    @property
    def leaf(self) -> str:
        """Leaf Deployment, Service and server_name."""
        return f"{self.silo}-leaf"

    @property
    def leaf_config_map(self) -> str:
        return f"{self.leaf}-config"

    @property
    def labels(self) -> dict[str, str]:
        return {**labels(self.leaf, "leaf"), SILO_LABEL: self.silo}

    @property
    def selector(self) -> dict[str, str]:
        return selector_labels(self.leaf, "leaf")


@dataclass(frozen=True)
class UserRef:
    """A FleetUser and the names of what is rendered for it."""

    name: str

    @property
    def credentials_secret(self) -> str:
        """Holds the user's NKey (`user`, `nkey`, `seed`) and the hub's client `url`."""
        return f"fleetuser-{self.name}"

    @property
    def labels(self) -> dict[str, str]:
        return {**labels(self.name, "fleet-user"), FLEET_USER_LABEL: self.name}
