"""FleetStream spec -> nats-py StreamConfig / ConsumerConfig, and the comparison with a live stream.

Unset limits are rendered the way the server reports them back (-1, or 0 seconds for max_age), so a
freshly created stream compares equal to its spec. A KeyValue bucket is rendered exactly as nats-py's
own `create_key_value` builds one (history -> max_msgs_per_subject, ttl -> max_age, roll-ups,
deny delete, discard New, direct get, per-message TTL), plus extra subjects mapped into the bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)

from fleetlattice.api.base import duration_seconds, size_bytes
from fleetlattice.api.fleetstream import ConsumerSpec, FleetStreamSpec

UNLIMITED = -1
KV_DEFAULT_DUPLICATE_WINDOW = 120.0  # seconds, as nats-py's create_key_value

_RETENTION = {
    "Limits": RetentionPolicy.LIMITS,
    "Interest": RetentionPolicy.INTEREST,
    "WorkQueue": RetentionPolicy.WORK_QUEUE,
}
_STORAGE = {"File": StorageType.FILE, "Memory": StorageType.MEMORY}
_DISCARD = {"Old": DiscardPolicy.OLD, "New": DiscardPolicy.NEW}
_ACK = {"Explicit": AckPolicy.EXPLICIT, "None": AckPolicy.NONE, "All": AckPolicy.ALL}
_DELIVER = {
    "All": DeliverPolicy.ALL,
    "New": DeliverPolicy.NEW,
    "Last": DeliverPolicy.LAST,
    "LastPerSubject": DeliverPolicy.LAST_PER_SUBJECT,
}


def stream_name(spec: FleetStreamSpec) -> str:
    """The stream on the server: the name itself, or KV_<bucket> for a KeyValue bucket."""
    return f"KV_{spec.name}" if spec.kind == "KeyValue" else spec.name


def _size(value: str | None) -> int:
    return UNLIMITED if value is None else size_bytes(value)


def _seconds(value: str | None) -> float:
    """Durations as nats-py takes them: float seconds; 0 means unlimited / server default."""
    return 0.0 if value is None else duration_seconds(value)


def _kv_transform(bucket: str, subject: str) -> SubjectTransform:
    """Map an extra subject into the bucket: its wildcard tokens become the key, e.g. fleet.state.>
    -> $KV.<bucket>.> (fleet.state.ct-fac.gpu is key ct-fac.gpu) and a.*.b -> $KV.<bucket>.{{wildcard(1)}}."""
    key_tokens: list[str] = []
    for token in subject.split("."):
        if token == "*":
            key_tokens.append(f"{{{{wildcard({len(key_tokens) + 1})}}}}")
        elif token == ">":
            key_tokens.append(">")
    if not key_tokens:
        raise ValueError(f"KeyValue subject {subject!r} has no wildcard to take the key from")
    return SubjectTransform(src=subject, dest=f"$KV.{bucket}." + ".".join(key_tokens))


def _common(spec: FleetStreamSpec) -> dict[str, Any]:
    return {
        "name": stream_name(spec),
        "description": spec.description or None,
        "storage": _STORAGE[spec.storage],
        "num_replicas": spec.replicas,
        "max_bytes": _size(spec.max_bytes),
        "max_msg_size": _size(spec.max_msg_size),
        "max_msgs": spec.max_msgs or UNLIMITED,
        "max_consumers": spec.max_consumers or UNLIMITED,
    }


def _stream(spec: FleetStreamSpec) -> StreamConfig:
    return StreamConfig(
        **_common(spec),
        subjects=list(spec.subjects),
        retention=_RETENTION[spec.retention],
        discard=_DISCARD[spec.discard],
        max_age=_seconds(spec.max_age),
        max_msgs_per_subject=spec.max_msgs_per_subject or UNLIMITED,
        duplicate_window=_seconds(spec.duplicate_window),
    )


def _key_value(spec: FleetStreamSpec) -> StreamConfig:
    if len(spec.subjects) > 1:
        raise ValueError(
            f"KeyValue {spec.name}: at most one extra subject (a stream has a single subject transform), "
            f"got {len(spec.subjects)}"
        )
    if spec.max_msgs_per_subject is not None:
        raise ValueError(f"KeyValue {spec.name}: set history, not maxMsgsPerSubject")
    ttl = _seconds(spec.ttl)
    default_window = min(KV_DEFAULT_DUPLICATE_WINDOW, ttl) if ttl else KV_DEFAULT_DUPLICATE_WINDOW
    return StreamConfig(
        **_common(spec),
        subjects=[f"$KV.{spec.name}.>", *spec.subjects],
        subject_transform=_kv_transform(spec.name, spec.subjects[0]) if spec.subjects else None,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.NEW,
        max_age=ttl,
        max_msgs_per_subject=spec.history or 1,
        duplicate_window=_seconds(spec.duplicate_window) or default_window,
        allow_rollup_hdrs=True,
        deny_delete=True,
        allow_direct=True,
        allow_msg_ttl=True,
    )


def render_stream_config(spec: FleetStreamSpec) -> StreamConfig:
    """The StreamConfig to create or update the stream (or the KV bucket's stream) with."""
    return _key_value(spec) if spec.kind == "KeyValue" else _stream(spec)


def _consumer(consumer: ConsumerSpec) -> ConsumerConfig:
    filters = list(consumer.filter_subjects)
    return ConsumerConfig(
        name=consumer.name,
        durable_name=consumer.name,
        filter_subject=filters[0] if len(filters) == 1 else None,
        filter_subjects=filters if len(filters) > 1 else None,
        ack_policy=_ACK[consumer.ack_policy],
        ack_wait=duration_seconds(consumer.ack_wait),
        max_deliver=consumer.max_deliver,
        max_ack_pending=consumer.max_ack_pending,
        deliver_policy=_DELIVER[consumer.deliver_policy],
    )


def render_consumer_configs(spec: FleetStreamSpec) -> list[ConsumerConfig]:
    """Durable pull consumers (no deliver subject) of the stream, in spec order."""
    return [_consumer(c) for c in spec.consumers]


# Fields the spec decides. Anything else (first_seq, metadata, compression, ...) is the server's or
# another tool's, and never counts as drift.
_CONTROLLED = (
    "name",
    "description",
    "subjects",
    "subject_transform",
    "retention",
    "storage",
    "num_replicas",
    "discard",
    "max_age",
    "max_bytes",
    "max_msgs",
    "max_msgs_per_subject",
    "max_msg_size",
    "max_consumers",
    "duplicate_window",
    "allow_rollup_hdrs",
    "deny_delete",
    "allow_direct",
    "allow_msg_ttl",
)
_BOOLEANS = frozenset({"allow_rollup_hdrs", "deny_delete", "allow_direct", "allow_msg_ttl"})
# Fields where an unset desired value is itself the desired state (no description, no transform).
_UNSET_IS_A_VALUE = frozenset({"description", "subject_transform"})


def _normal(field: str, value: Any) -> Any:
    """One representation per meaning: enums as their string, lists order-free, floats to the
    nanosecond the server stores, a transform as (src, dest), an empty string as unset, an unset
    boolean as false."""
    if field in _BOOLEANS:
        return bool(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return sorted(value)
    if isinstance(value, SubjectTransform):
        return (value.src, value.dest)
    if isinstance(value, float):
        return round(value, 9)
    return None if value == "" else value


def _server_chooses(field: str, desired: Any) -> bool:
    """Desired values meaning "whatever the server picks", which are never drift."""
    if desired is None:
        return field not in _UNSET_IS_A_VALUE
    return field == "duplicate_window" and desired == 0


def stream_config_diff(desired: StreamConfig, live: StreamConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (live, desired)} for every spec-controlled field that differs."""
    diff: dict[str, tuple[Any, Any]] = {}
    for field in _CONTROLLED:
        want, have = getattr(desired, field), getattr(live, field)
        if not _server_chooses(field, want) and _normal(field, want) != _normal(field, have):
            diff[field] = (have, want)
    return diff


def _retention_change(live: Any, desired: Any) -> bool:
    workqueue = RetentionPolicy.WORK_QUEUE.value
    return (_normal("retention", live) == workqueue) != (_normal("retention", desired) == workqueue)


def _switched_off(live: Any, desired: Any) -> bool:
    return bool(live) and not bool(desired)


def _any_change(live: Any, desired: Any) -> bool:
    return True


# What nats-server 2.15 refuses in a stream update (each tried against a live server): field ->
# (is this change refused?, why).
_IMMUTABLE: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "name": (_any_change, "name can not change"),
    "storage": (_any_change, "storage type can not change"),
    "retention": (_retention_change, "retention can not change to or from WorkQueue"),
    "deny_delete": (_switched_off, "deny delete can not be turned off"),
    "allow_msg_ttl": (_switched_off, "per-message TTL can not be turned off"),
}


def immutable_changes(diff: dict[str, tuple[Any, Any]]) -> list[str]:
    """Human-readable reasons NATS would refuse to apply `diff` as an update (empty: update is fine)."""
    reasons = []
    for field, (live, desired) in diff.items():
        refused, why = _IMMUTABLE.get(field, (None, ""))
        if refused is not None and refused(live, desired):
            reasons.append(f"{why} ({_normal(field, live)} -> {_normal(field, desired)})")
    return reasons


def config_dict(config: StreamConfig | ConsumerConfig) -> dict[str, Any]:
    """The JSON the JetStream API receives (nats-py's own as_dict), with enums as plain strings."""
    return {key: value.value if isinstance(value, Enum) else value for key, value in config.as_dict().items()}
