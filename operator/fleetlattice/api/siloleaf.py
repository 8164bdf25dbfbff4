"""SiloLeaf: a silo's identity on the hub and, optionally, its leaf nats-server."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from fleetlattice.api import defaults
from fleetlattice.api.base import (
    ApiModel,
    DnsLabel,
    ObjectName,
    Rule,
    SiloName,
    StatusBase,
    Subject,
    silo_field,
)
from fleetlattice.api.bus import (
    DEFAULT_STATE_ASPECTS,
    SHARED_SUBJECT_PREFIXES,
    SILO_OWNED_WORDS,
    silo_subject_prefixes,
)

MAX_EXTRA_SUBJECTS = 32
# With the silo's own key and the agent's, a silo writes at most MAX_STATE_ASPECTS + 2 keys of FLEET_STATE, so its
# footprint there is bounded: keys x the bucket's history x its maxMsgSize (README, SiloLeaf, Footprint).
MAX_STATE_ASPECTS = 8
_EXTRA_SCOPE = (
    "subjects under the silo's own fleet.<silo>. or fleet.{" + ",".join(SILO_OWNED_WORDS) + "}.<silo>., or under "
    + " or ".join(SHARED_SUBJECT_PREFIXES) + " (state keys: stateAspects)"
)
# One NATS token, short: the key <silo>.<aspect>.
StateAspect = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-_a-z0-9]*[a-z0-9])?$", max_length=32)]


class ExtraPermissions(ApiModel):
    """Subjects granted on top of the silo-scoped defaults (see DESIGN.md, Security). Only the silo's own
    subjects or the seeds' shared ones: SiloLeafSpec's rule says which."""

    publish: list[Subject] = Field(default_factory=list, max_length=MAX_EXTRA_SUBJECTS,
                                   description="Extra subjects the silo may publish.")
    subscribe: list[Subject] = Field(default_factory=list, max_length=MAX_EXTRA_SUBJECTS,
                                     description="Extra subjects the silo may receive.")
    state_aspects: list[StateAspect] = Field(
        list(DEFAULT_STATE_ASPECTS), max_length=MAX_STATE_ASPECTS,
        description="FLEET_STATE keys <silo>.<aspect> the silo may write (fleet.state.<silo>.<aspect>), besides "
        "its own key <silo> and its agent's <silo>.agent. Any other key of the silo is denied.")


def _prefix_cel(var: str) -> str:
    """CEL: `var` starts with one of the silo's subject prefixes (bus.silo_subject_prefixes, spelled in CEL)."""
    owned = ["'fleet.' + self.silo + '.'", *(f"'fleet.{w}.' + self.silo + '.'" for w in SILO_OWNED_WORDS)]
    shared = [f"'{p}'" for p in SHARED_SUBJECT_PREFIXES]
    return " || ".join(f"{var}.startsWith({p})" for p in [*owned, *shared])


def _extras_in_scope(spec: SiloLeafSpec) -> bool:
    prefixes = silo_subject_prefixes(spec.silo)
    return all(s.startswith(prefixes) for s in [*spec.permissions.publish, *spec.permissions.subscribe])


class LeafWorkload(ApiModel):
    """Where the silo's leaf nats-server runs."""

    mode: Literal["InCluster", "External"] = Field(
        "InCluster",
        description="InCluster runs the leaf in this cluster, in the SiloLeaf's namespace (the silo's "
        "namespace), owned by the SiloLeaf; External only renders a bundle "
        "(fleetlattice leaf export) to apply in the silo's own cluster.",
    )
    image: str = Field(defaults.NATS_IMAGE, min_length=1, description="Leaf nats-server image.")
    namespace: DnsLabel | None = Field(
        None, description="Namespace the leaf runs in, with the Secret its silo's own clients sign in with "
        "(default: the SiloLeaf's). The seed's leaf runs beside its apps: eose-entry. The operator must be "
        "allowed to manage that namespace; what it puts there is deleted with the SiloLeaf.",
    )
    service_name: DnsLabel | None = Field(
        None, description="Name of the leaf's Service (default: <silo>-leaf); the seed's is nats-leaf, so apps "
        "reach nats://nats-leaf.eose-entry.svc.cluster.local:4222.",
    )


class SiloLeafSpec(ApiModel):
    """Desired state of a silo's leaf."""

    rules = (
        Rule(f"!has(self.permissions) || ((!has(self.permissions.publish) || self.permissions.publish.all(s, "
             f"{_prefix_cel('s')})) && (!has(self.permissions.subscribe) || self.permissions.subscribe.all(s, "
             f"{_prefix_cel('s')})))",
             f"extra permissions may only name {_EXTRA_SCOPE}", _extras_in_scope),
    )

    silo: SiloName = silo_field("Silo name: a DNS label, used as the NATS token in fleet.*.<silo>.* subjects.")
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
    leaf_namespace: str = Field("", description="Namespace the in-cluster leaf runs in.")
    leaf_url: str = Field("", description="Where the silo's agent and apps connect: the leaf's Service.")
