"""FleetHub: the hub nats-server StatefulSet with JetStream, routes and a leafnode listener."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from fleetlattice.api import defaults
from fleetlattice.api.base import ApiModel, ObjectName, Rule, Size, StatusBase, StatusModel


class HubPorts(ApiModel):
    """Container and Service ports of the hub."""

    client: int = Field(defaults.CLIENT_PORT, ge=1, le=65535, description="Client port.")
    cluster: int = Field(defaults.CLUSTER_PORT, ge=1, le=65535, description="Route port between hub replicas.")
    leafnodes: int = Field(defaults.LEAFNODE_PORT, ge=1, le=65535, description="Port silo leaves dial.")
    monitoring: int = Field(defaults.MONITOR_PORT, ge=1, le=65535, description="HTTP monitoring port.")


class JetStreamSpec(ApiModel):
    """JetStream storage of each hub replica."""

    max_memory_store: Size = Field("512Mi", description="Memory JetStream may use per server, e.g. 512Mi.")
    max_file_store: Size = Field("5Gi", description="Disk JetStream may use per server, e.g. 5Gi.")
    storage_size: Size = Field("5Gi", description="Size of each replica's PersistentVolumeClaim.")
    storage_class_name: str | None = Field(
        None, description="StorageClass of the data volume; unset uses emptyDir (data lost on pod loss)."
    )


class HubTLS(ApiModel):
    """TLS for client and leafnode connections, from a kubernetes.io/tls Secret (e.g. cert-manager)."""

    enabled: bool = Field(False, description="Serve TLS on the client and leafnode ports.")
    secret_name: ObjectName | None = Field(
        None, description="Secret holding tls.crt, tls.key and ca.crt; required when enabled."
    )


class HubLimits(ApiModel):
    """Server limits. maxPayload and maxConnections reach running servers by config reload;
    nats-server cannot reload maxSubscriptions, so changing it rolls the hub pods."""

    max_payload: Size = Field("1Mi", description="Largest message a client may publish, e.g. 1Mi.")
    max_connections: int = Field(65536, ge=1, description="Most client connections per server.")
    max_subscriptions: int = Field(0, ge=0, description="Most subscriptions per connection; 0 = unlimited.")


class LeafnodeListener(ApiModel):
    """How silo leaves reach the hub."""

    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="Type of the leafnode Service."
    )
    advertise: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$",
        description="host:port leaves in other clusters dial (put in exported bundles); "
        "defaults to the in-cluster leafnode Service address.",
    )


class ResourceRequirements(ApiModel):
    """CPU/memory requests and limits of the nats-server container."""

    requests: dict[str, str] = Field(default_factory=dict, description="Resource requests, e.g. cpu: 100m.")
    limits: dict[str, str] = Field(default_factory=dict, description="Resource limits, e.g. memory: 1Gi.")


class FleetHubSpec(ApiModel):
    """Desired state of a hub."""

    replicas: Literal[1, 3, 5] = Field(
        1, description="Number of hub servers: 1, or 3/5 to form a cluster with routes (JetStream R3)."
    )
    image: str = Field(defaults.NATS_IMAGE, min_length=1, description="nats-server container image.")
    reloader_image: str = Field(defaults.RELOADER_IMAGE, min_length=1, description="Config reloader sidecar image.")
    ports: HubPorts = Field(default_factory=HubPorts, description="Ports of the hub.")
    jetstream: JetStreamSpec = Field(default_factory=JetStreamSpec, description="JetStream storage.")
    tls: HubTLS = Field(default_factory=HubTLS, description="TLS settings.")
    limits: HubLimits = Field(default_factory=HubLimits, description="Server limits.")
    leafnodes: LeafnodeListener = Field(default_factory=LeafnodeListener, description="Leafnode listener.")
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements, description="Container resources.")

    rules = (
        Rule(
            "!self.tls.enabled || has(self.tls.secretName)",
            "tls.secretName is required when tls.enabled is true",
            lambda s: not s.tls.enabled or s.tls.secret_name is not None,
        ),
    )


class JetStreamUsage(StatusModel):
    """JetStream usage summed over the hub's servers."""

    streams: int = Field(0, description="Streams on the hub.")
    consumers: int = Field(0, description="Consumers on the hub.")
    messages: int = Field(0, description="Messages stored.")
    bytes: int = Field(0, description="Bytes stored.")
    memory: int = Field(0, description="Memory used by JetStream, bytes.")
    storage: int = Field(0, description="Disk used by JetStream, bytes.")


class ServerStatus(StatusModel):
    """One hub server as its monitoring endpoint reports it."""

    name: str = Field(description="Pod name of the server.")
    version: str = Field("", description="nats-server version.")
    connections: int = Field(0, description="Client connections.")
    leafnodes: int = Field(0, description="Connected leafnodes.")
    config_digest: str = Field("", description="Digest of the configuration the server runs.")
    config_load_time: str = Field("", description="When the server last (re)loaded its configuration.")


class FleetHubStatus(StatusBase):
    """Observed state of a hub, read from the servers' monitoring endpoints."""

    ready: str = Field("", description="Ready/desired servers, e.g. 3/3.")
    ready_replicas: int = Field(0, description="Servers answering /healthz.")
    replicas: int = Field(0, description="Desired servers.")
    version: str = Field("", description="nats-server version the servers run.")
    leaf_connections: int = Field(0, description="Silo leaves connected to the hub.")
    streams: int = Field(0, description="JetStream streams on the hub.")
    jetstream: JetStreamUsage | None = Field(None, description="JetStream usage.")
    servers: list[ServerStatus] = Field(default_factory=list, description="Per-server state.")
    config_hash: str = Field("", description="Hash of the rendered nats.conf the servers should run.")
    config_changed_at: datetime | None = Field(None, description="When the rendered nats.conf last changed.")
    restart_hash: str = Field("", description="Hash of the settings that need a pod restart to change.")
    client_url: str = Field("", description="In-cluster URL clients use to reach the hub.")
    leafnode_url: str = Field("", description="URL silo leaves dial.")
