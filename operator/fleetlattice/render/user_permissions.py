"""Permissions of a FleetUser's hub user (DESIGN.md, FleetUser and Security).

Allow-lists built from the user's roles, its read access and its extras, then a deny list that no spec can
lift: a hub-side identity never publishes what only silos publish (install reports, events, state), so it can
never speak for a silo. Replies reach the user on its own inbox prefix, never the shared `_INBOX.>`.
"""

from __future__ import annotations

from fleetlattice.api.bus import (
    OBSERVED_STREAMS,
    REPORT_KINDS,
    REQUEST_KINDS,
    STATE_BUCKET,
    install_subject,
    user_inbox_prefix,
)
from fleetlattice.api.fleetuser import FleetUserSpec, IngestConsumer
from fleetlattice.render.permissions import Permissions

# A direct connection to the hub: the hub checks the plain API form (domain requests are mapped to it first).
_API = "$JS.API"
SILO_ONLY_SUBJECTS = (
    *(install_subject("*", kind) for kind in REPORT_KINDS),
    "fleet.events.>",
    "fleet.state.>",
    f"$KV.{STATE_BUCKET}.>",
)


def kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def _read_api(stream: str) -> list[str]:
    """Info, get (direct or by sequence) and ephemeral consumers of one stream, with their flow control: what
    `nats stream info/get`, `nats kv get/watch` and a watcher app use. No consumer delete, and no pull from
    named consumers (an Ingest user's durable on the same stream stays its own)."""
    return [
        f"{_API}.STREAM.INFO.{stream}",
        f"{_API}.STREAM.MSG.GET.{stream}",
        f"{_API}.DIRECT.GET.{stream}",
        f"{_API}.DIRECT.GET.{stream}.>",
        f"{_API}.CONSUMER.CREATE.{stream}",
        f"{_API}.CONSUMER.CREATE.{stream}.>",
        f"{_API}.CONSUMER.INFO.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def _ingest_api(ingest: IngestConsumer) -> list[str]:
    """Fetch, look up and ack the one durable the operator made for the user."""
    return [
        f"{_API}.STREAM.INFO.{ingest.stream}",
        f"{_API}.CONSUMER.INFO.{ingest.stream}.{ingest.durable}",
        f"{_API}.CONSUMER.MSG.NEXT.{ingest.stream}.{ingest.durable}",
        f"$JS.ACK.{ingest.stream}.{ingest.durable}.>",
    ]


def _read_streams(spec: FleetUserSpec) -> list[str]:
    streams = [*spec.read.streams, *(kv_stream(b) for b in spec.read.buckets)]
    if "Observer" in spec.roles:
        streams += [kv_stream(STATE_BUCKET), *OBSERVED_STREAMS]
    return list(dict.fromkeys(streams))


def _unique(subjects: list[str]) -> list[str]:
    return list(dict.fromkeys(subjects))


def user_permissions(name: str, spec: FleetUserSpec) -> Permissions:
    """nats-server permissions of FleetUser `name`."""
    publish: list[str] = []
    subscribe = [f"{user_inbox_prefix(name)}.>"]
    if "Observer" in spec.roles:
        subscribe.append("fleet.>")
        # `nats stream ls`, `nats kv ls`: names and configs of every stream, never their messages.
        publish += [f"{_API}.STREAM.NAMES", f"{_API}.STREAM.LIST"]
    if "Installer" in spec.roles:
        for silo in spec.silos or ["*"]:
            publish += [install_subject(silo, kind) for kind in REQUEST_KINDS]
            subscribe.append(install_subject(silo, ">"))
    if spec.ingest is not None:
        publish += _ingest_api(spec.ingest)
    streams = _read_streams(spec)
    if streams:
        # Account info: the first call of the nats CLI's JetStream commands and of clients' jetstream().
        publish.append(f"{_API}.INFO")
        for stream in streams:
            publish += _read_api(stream)
    publish = _unique([*publish, *spec.permissions.publish.allow])
    # nats-server reads an empty allow list as "everything": a user with nothing to publish gets a deny of all.
    publish_deny = [*SILO_ONLY_SUBJECTS, *spec.permissions.publish.deny] if publish else [">"]
    return {
        "publish": {"allow": publish, "deny": _unique(publish_deny)},
        "subscribe": {"allow": _unique([*subscribe, *spec.permissions.subscribe.allow]),
                      "deny": _unique(spec.permissions.subscribe.deny)},
    }
