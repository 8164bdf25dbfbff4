"""Silo-scoped permissions of a silo's credential on the hub (DESIGN.md, Security).

Allow-lists only: anything not listed is denied, so one silo can never publish another silo's
`done` or receive another silo's `request`. The lists are from the silo's point of view (what
its clients may publish / receive); nats-server applies a hub user's permissions to a leafnode
connection in that same direction (verified with real servers in test_render_runtime.py).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from fleetlattice.api.bus import (
    AGENT_STATE_ASPECT,
    INSTALL_STREAM,
    JS_DOMAIN_API,
    REPORT_KINDS,
    REQUEST_KINDS,
    STATE_BUCKET,
    agent_durable,
    event_subject,
    inbox_prefix,
    install_subject,
    state_subject,
)
from fleetlattice.api.siloleaf import ExtraPermissions


class SubjectList(TypedDict):
    allow: list[str]
    deny: NotRequired[list[str]]


class Permissions(TypedDict):
    """The `permissions` map of a nats-server user. An empty allow list allows everything but the deny list."""

    publish: SubjectList
    subscribe: SubjectList


def _state_writes(silo: str, aspects: list[str]) -> list[str]:
    """The FLEET_STATE keys the silo writes, each by name, never a wildcard: its own, its declared aspects, its
    agent's; as a plain publish (the bucket's subject transform) and as a KV put. Its footprint in the bucket is
    then at most these keys x history x maxMsgSize."""
    own: tuple[str | None, ...] = (None, *dict.fromkeys([*aspects, AGENT_STATE_ASPECT]))
    return [*(state_subject(silo, a) for a in own),
            *(f"$KV.{STATE_BUCKET}.{silo}" + (f".{a}" if a else "") for a in own)]


def _publish(silo: str, aspects: list[str]) -> list[str]:
    durable = agent_durable(silo)
    return [
        *(install_subject(silo, kind) for kind in REPORT_KINDS),
        event_subject(silo, ">"),
        *_state_writes(silo, aspects),
        f"fleet.{silo}.scan.request",
        f"fleet.{silo}.audit.finding",
        # The minimum JetStream API for the agent's pull consumer: fetch, look it up, ack.
        *_consumer_api(durable),
        f"$JS.ACK.{INSTALL_STREAM}.{durable}.>",
        *_own_state_read_api(silo),
    ]


def _both_api_forms(operations: list[str]) -> list[str]:
    """Through a leafnode only the domain form `$JS.<domain>.API` passes; on a direct (STANDARD) connection
    the hub checks the subject after mapping it to the plain `$JS.API`, so that form must be allowed too."""
    return [f"{api}.{op}" for api in (JS_DOMAIN_API, "$JS.API") for op in operations]


def _consumer_api(durable: str) -> list[str]:
    """Fetch and info of the agent's consumer, and nothing of any other."""
    return _both_api_forms([f"CONSUMER.{op}.{INSTALL_STREAM}.{durable}" for op in ("MSG.NEXT", "INFO")])


def _own_state_read_api(silo: str) -> list[str]:
    """`nats kv get FLEET_STATE <silo>` (and nats-py's kv.get): the bucket's info, then a direct get whose
    subject names the key, so only the silo's own keys (`<silo>`, `<silo>.<aspect>`) can be read. The
    bucket allows direct gets; the body-addressed STREAM.MSG.GET, which could name any key, stays denied."""
    stream, keys = f"KV_{STATE_BUCKET}", f"$KV.{STATE_BUCKET}.{silo}"
    return _both_api_forms([f"STREAM.INFO.{stream}", f"DIRECT.GET.{stream}.{keys}", f"DIRECT.GET.{stream}.{keys}.>"])


def _subscribe(silo: str) -> list[str]:
    return [
        # Replies (JetStream API answers, fetched messages, request/reply) land on the silo's own inboxes.
        f"{inbox_prefix(silo)}.>",
        *(install_subject(silo, kind) for kind in REQUEST_KINDS),
        f"fleet.{silo}.scan.result",
    ]


def _merged(base: list[str], extra: list[str]) -> list[str]:
    """Base subjects first (in their fixed order), then extras not already present, deduplicated."""
    return list(dict.fromkeys([*base, *extra]))


def silo_permissions(silo: str, extra: ExtraPermissions | None = None) -> Permissions:
    """nats-server permissions for silo `silo`, plus the SiloLeaf's spec.permissions extras."""
    extra = extra or ExtraPermissions()
    return {
        "publish": {"allow": _merged(_publish(silo, extra.state_aspects), extra.publish)},
        "subscribe": {"allow": _merged(_subscribe(silo), extra.subscribe)},
    }
