"""FleetStream: a JetStream stream or KV bucket on a hub."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fleetlattice.api.base import ApiModel, Duration, ObjectName, Rule, Size, StatusBase, StreamName, Subject, immutable


class ConsumerSpec(ApiModel):
    """A durable consumer the operator keeps on the stream."""

    name: StreamName = Field(description="Durable consumer name.")
    filter_subjects: list[Subject] = Field(
        default_factory=list, description="Subjects the consumer receives; empty = the whole stream."
    )
    ack_policy: Literal["Explicit", "None", "All"] = Field("Explicit", description="Ack policy.")
    ack_wait: Duration = Field("30s", description="How long an unacked message waits before redelivery.")
    max_deliver: int = Field(-1, ge=-1, description="Deliveries before a message is given up; -1 = unlimited.")
    max_ack_pending: int = Field(1000, ge=-1, description="Unacked messages in flight; -1 = unlimited.")
    deliver_policy: Literal["All", "New", "Last", "LastPerSubject"] = Field(
        "All", description="Where a new consumer starts."
    )


_STREAM_RULES = (
    Rule(
        "self.kind == 'KeyValue' || (!has(self.history) && !has(self.ttl))",
        "history and ttl are only valid for kind KeyValue",
        lambda s: s.kind == "KeyValue" or (s.history is None and s.ttl is None),
    ),
    Rule(
        "self.kind == 'KeyValue' || size(self.subjects) > 0",
        "subjects: a Stream needs at least one subject",
        lambda s: s.kind == "KeyValue" or len(s.subjects) > 0,
    ),
    Rule(
        "self.kind == 'Stream' || self.retention == 'Limits'",
        "retention: a KeyValue bucket always has retention Limits",
        lambda s: s.kind == "Stream" or s.retention == "Limits",
    ),
    Rule(
        "self.kind == 'Stream' || size(self.subjects) <= 1",
        "subjects: a KeyValue bucket takes at most one extra subject (one subject transform per stream)",
        lambda s: s.kind == "Stream" or len(s.subjects) <= 1,
    ),
    Rule(
        "self.kind == 'Stream' || self.subjects.all(x, x.endsWith('>') || x.contains('*'))",
        "subjects: a KeyValue bucket's extra subject needs a wildcard, e.g. fleet.state.>, to map onto keys",
        lambda s: s.kind == "Stream" or all(x.endswith(">") or "*" in x for x in s.subjects),
    ),
    Rule(
        "self.kind == 'Stream' || !has(self.maxMsgsPerSubject)",
        "maxMsgsPerSubject is not valid for kind KeyValue: use history",
        lambda s: s.kind == "Stream" or s.max_msgs_per_subject is None,
    ),
    Rule(
        "self.kind == 'Stream' || size(self.consumers) == 0",
        "consumers are only valid for kind Stream",
        lambda s: s.kind == "Stream" or not s.consumers,
    ),
)


class FleetStreamSpec(ApiModel):
    """Desired state of a stream or KV bucket."""

    hub: ObjectName = Field(description="Name of the FleetHub (same namespace) holding the stream.")
    kind: Literal["Stream", "KeyValue"] = Field(
        "Stream",
        description="Stream, or KeyValue for a KV bucket.",
        json_schema_extra=immutable("kind is immutable"),
    )
    name: StreamName = Field(
        description="Stream name, or bucket name for KeyValue (the stream is then KV_<name>).",
        json_schema_extra=immutable("name is immutable"),
    )
    description: str = Field("", max_length=1024, description="Free-text description stored on the stream.")
    subjects: list[Subject] = Field(
        default_factory=list,
        max_length=64,
        description="Subjects the stream captures. For KeyValue, extra subjects whose publishes land "
        "in the bucket, e.g. fleet.state.> makes 'nats pub fleet.state.ct-fac' set key ct-fac.",
    )
    retention: Literal["Limits", "Interest", "WorkQueue"] = Field(
        "Limits", description="Retention policy. Changing to or from WorkQueue is refused by NATS."
    )
    max_age: Duration | None = Field(None, description="Oldest message kept, e.g. 7d; unset = forever.")
    max_bytes: Size | None = Field(None, description="Most bytes kept, e.g. 5Gi; unset = unlimited.")
    max_msgs: int | None = Field(None, ge=1, description="Most messages kept; unset = unlimited.")
    max_msgs_per_subject: int | None = Field(None, ge=1, description="Most messages kept per subject.")
    max_msg_size: Size | None = Field(None, description="Largest message accepted, e.g. 1Mi.")
    max_consumers: int | None = Field(
        None, ge=1, le=100_000,
        description="Most consumers on the stream; unset = the server's default, 1,000 on nats-server 2.15. "
        "FLEET_INSTALL holds one durable per silo, so a fleet past 999 silos needs more.")
    storage: Literal["File", "Memory"] = Field(
        "File", description="Storage backend.", json_schema_extra=immutable("storage is immutable")
    )
    replicas: int = Field(1, ge=1, le=5, description="Replicas (R3 needs a 3-server hub).")
    discard: Literal["Old", "New"] = Field("Old", description="What to drop when a limit is hit.")
    duplicate_window: Duration | None = Field(
        None, description="Window in which Nats-Msg-Id de-duplicates publishes, e.g. 2m."
    )
    history: int | None = Field(None, ge=1, le=64, description="KeyValue only: values kept per key.")
    ttl: Duration | None = Field(None, description="KeyValue only: how long a value lives.")
    consumers: list[ConsumerSpec] = Field(
        default_factory=list,
        description="Durable consumers kept on the stream.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain", description="On delete of this resource: Retain keeps the stream and its data, Delete removes it."
    )

    rules = _STREAM_RULES


class FleetStreamStatus(StatusBase):
    """Live state of the stream as JetStream reports it."""

    stream_name: str = Field("", description="Name of the stream on the server (KV_<bucket> for KeyValue).")
    messages: int = Field(0, description="Messages stored.")
    bytes: int = Field(0, description="Bytes stored.")
    first_seq: int = Field(0, description="First sequence in the stream.")
    last_seq: int = Field(0, description="Last sequence in the stream.")
    consumers: int = Field(0, description="Consumers on the stream.")
