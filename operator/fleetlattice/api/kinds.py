"""The kinds: names, printer columns and models, as DESIGN.md fixes them."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from fleetlattice.api.fleethub import FleetHubSpec, FleetHubStatus
from fleetlattice.api.fleetstream import FleetStreamSpec, FleetStreamStatus
from fleetlattice.api.fleetuser import FleetUserSpec, FleetUserStatus
from fleetlattice.api.siloinstall import SiloInstallSpec, SiloInstallStatus
from fleetlattice.api.siloleaf import SiloLeafSpec, SiloLeafStatus

GROUP = "fleet.lattice.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "fleet"
READY_COLUMN = '.status.conditions[?(@.type=="Ready")].status'


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_name: str
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[Column, ...]


FLEET_HUB = Kind(
    "FleetHub",
    "fleethubs",
    "fleethub",
    "fhub",
    "A hub nats-server (1, 3 or 5 replicas) with JetStream and a leafnode listener for silo leaves.",
    FleetHubSpec,
    FleetHubStatus,
    (
        Column("Ready", "string", ".status.ready", "Ready/desired servers"),
        Column("Version", "string", ".status.version", "nats-server version"),
        Column("Leaves", "integer", ".status.leafConnections", "Connected silo leaves"),
        Column("Streams", "integer", ".status.streams", "JetStream streams"),
    ),
)
SILO_LEAF = Kind(
    "SiloLeaf",
    "siloleaves",
    "siloleaf",
    "leaf",
    "A silo's identity on the hub (credential, permissions) and its leaf nats-server.",
    SiloLeafSpec,
    SiloLeafStatus,
    (
        Column("Silo", "string", ".spec.silo", "Silo name"),
        Column("Hub", "string", ".spec.hub", "FleetHub the leaf dials"),
        Column("Connected", "boolean", ".status.connected", "Leaf connected to the hub"),
        Column("Ready", "string", READY_COLUMN, "Ready condition"),
        Column("Since", "date", ".status.connectedSince", "Connected since", priority=1),
        Column("RTT", "string", ".status.rtt", "Round trip to the hub", priority=1),
        Column("Hub Server", "string", ".status.hubServer", "Hub server holding the leaf", priority=1),
    ),
)
FLEET_STREAM = Kind(
    "FleetStream",
    "fleetstreams",
    "fleetstream",
    "fstream",
    "A JetStream stream or KV bucket on a hub.",
    FleetStreamSpec,
    FleetStreamStatus,
    (
        Column("Stream", "string", ".spec.name", "Stream or bucket name"),
        Column("Kind", "string", ".spec.kind", "Stream or KeyValue"),
        Column("Messages", "integer", ".status.messages", "Messages stored"),
        Column("Bytes", "integer", ".status.bytes", "Bytes stored"),
        Column("Ready", "string", READY_COLUMN, "Ready condition"),
    ),
)
SILO_INSTALL = Kind(
    "SiloInstall",
    "siloinstalls",
    "siloinstall",
    "sinst",
    "One install or upgrade of a silo, carried out by the silo's agent over the install bus.",
    SiloInstallSpec,
    SiloInstallStatus,
    (
        Column("Silo", "string", ".spec.silo", "Silo name"),
        Column("Version", "string", ".spec.version", "Version being installed"),
        Column("Phase", "string", ".status.phase", "Install phase"),
        Column("Progress", "string", ".status.progressText", "Steps done / total"),
        Column("Pods", "integer", ".status.result.pods", "Pods ready after install"),
        # -o wide
        Column("Attempt", "integer", ".status.attempt", "Attempt number", priority=1),
        Column("Step", "string", ".status.progress.step", "Latest step the agent reported", priority=1),
        Column("Request", "string", ".status.requestId", "requestId of the current attempt", priority=1),
        Column("Started", "date", ".status.startedAt", "When the first attempt started", priority=1),
        Column("Finished", "date", ".status.completedAt", "When it ended", priority=1),
    ),
)

FLEET_USER = Kind(
    "FleetUser",
    "fleetusers",
    "fleetuser",
    "fuser",
    "A hub-side identity for a person or an app (observer, installer, ingest consumer): its permissions and a "
    "generated NKey in a Secret it owns.",
    FleetUserSpec,
    FleetUserStatus,
    (
        Column("Hub", "string", ".spec.hub", "FleetHub the user signs in to"),
        Column("Roles", "string", ".spec.roles", "Preset roles"),
        Column("Ready", "string", READY_COLUMN, "Ready condition"),
        Column("Secret", "string", ".status.credentialsSecret", "Secret holding the NKey", priority=1),
        Column("URL", "string", ".status.url", "Hub client URL", priority=1),
    ),
)

KINDS: tuple[Kind, ...] = (FLEET_HUB, SILO_LEAF, FLEET_STREAM, SILO_INSTALL, FLEET_USER)
