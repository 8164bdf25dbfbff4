"""SiloLeaf: a silo's identity on the hub and, optionally, its leaf nats-server."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from fleetlattice.api import defaults
from fleetlattice.api.base import ApiModel, ObjectName, SiloName, StatusBase, Subject, immutable


class ExtraPermissions(ApiModel):
    """Subjects granted on top of the silo-scoped defaults (see DESIGN.md, Security)."""

    publish: list[Subject] = Field(default_factory=list, description="Extra subjects the silo may publish.")
    subscribe: list[Subject] = Field(default_factory=list, description="Extra subjects the silo may receive.")


class LeafWorkload(ApiModel):
    """Where the silo's leaf nats-server runs."""

    mode: Literal["InCluster", "External"] = Field(
        "InCluster",
        description="InCluster runs the leaf in this cluster, in the SiloLeaf's namespace (the silo's "
        "namespace), owned by the SiloLeaf; External only renders a bundle "
        "(fleetlattice leaf export) to apply in the silo's own cluster.",
    )
    image: str = Field(defaults.NATS_IMAGE, min_length=1, description="Leaf nats-server image.")


class SiloLeafSpec(ApiModel):
    """Desired state of a silo's leaf."""

    silo: SiloName = Field(
        description="Silo name: a DNS label, used as the NATS token in fleet.*.<silo>.* subjects.",
        json_schema_extra=immutable("silo is immutable"),
    )
    hub: ObjectName = Field(description="Name of the FleetHub (same namespace) the leaf dials.")
    leaf: LeafWorkload = Field(default_factory=LeafWorkload, description="The leaf workload.")
    permissions: ExtraPermissions = Field(
        default_factory=ExtraPermissions, description="Extra permissions for the silo's credential."
    )


class SiloLeafStatus(StatusBase):
    """Observed state of a silo's leaf, from the hub's /leafz."""

    connected: bool = Field(False, description="Whether the silo's leaf is connected to the hub.")
    connected_since: datetime | None = Field(None, description="When the current leaf connection started.")
    rtt: str = Field("", description="Round-trip time hub to leaf, as the hub measures it.")
    hub_server: str = Field("", description="Hub server the leaf is connected to.")
    credentials_secret: str = Field("", description="Secret holding the silo's generated credential.")
    last_heartbeat: datetime | None = Field(
        None, description="Last state the silo's agent wrote to FLEET_STATE (refreshed at most every 30s)."
    )
    installed_version: str = Field("", description="Version the silo's agent reports as installed.")
