"""FleetStream apply layer: create, update in place, refuse immutable changes, mirror live state."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from nats.js.errors import APIError, NotFoundError

from fleetlattice.api.fleetstream import FleetStreamSpec
from fleetlattice.clients.hub_connections import HubConnections, HubNotReachable
from fleetlattice.clients.kube import Kube
from fleetlattice.clients.metrics import CONSUMER_ACK_PENDING, CONSUMER_PENDING, STREAM_BYTES, STREAM_MESSAGES
from fleetlattice.logic.conditions import Cond, NotReady
from fleetlattice.render.names import HubRef
from fleetlattice.render.stream import (
    immutable_changes,
    render_consumer_configs,
    render_stream_config,
    stream_config_diff,
)

log = logging.getLogger(__name__)
JS_TIMEOUT = 5.0


async def _jetstream(kube: Kube, hubs: HubConnections, namespace: str, spec: FleetStreamSpec):
    hub = HubRef(spec.hub, namespace)
    if await kube.get("FleetHub", namespace, spec.hub) is None:
        raise NotReady("HubNotFound", f"FleetHub {namespace}/{spec.hub} does not exist")
    try:
        nc = await hubs.get(hub)
    except HubNotReachable as exc:
        raise NotReady("HubUnavailable", str(exc)) from exc
    return nc.jetstream(timeout=JS_TIMEOUT)


def live_fields(name: str, info: Any) -> dict[str, Any]:
    state = info.state
    return {
        "streamName": name,
        "messages": state.messages,
        "bytes": state.bytes,
        "firstSeq": state.first_seq,
        "lastSeq": state.last_seq,
        "consumers": state.consumer_count,
    }


async def _export_live_state(js: Any, namespace: str, name: str, info: Any) -> None:
    """The panels seed 003 asks for: size of each stream and lag of each of its consumers."""
    STREAM_MESSAGES.labels(namespace, name).set(info.state.messages)
    STREAM_BYTES.labels(namespace, name).set(info.state.bytes)
    for consumer in await js.consumers_info(name):
        CONSUMER_PENDING.labels(namespace, name, consumer.name).set(consumer.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(namespace, name, consumer.name).set(consumer.num_ack_pending or 0)


async def reconcile_stream(kube: Kube, hubs: HubConnections, namespace: str,
                           spec: FleetStreamSpec) -> tuple[dict[str, Any], list[Cond]]:
    """Make the server match the spec where NATS allows it; say exactly why where it does not."""
    js = await _jetstream(kube, hubs, namespace, spec)
    desired = render_stream_config(spec)
    name = desired.name
    try:
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            info = await js.add_stream(desired)
            log.info("created stream %s on hub %s/%s", name, namespace, spec.hub)
        else:
            diff = stream_config_diff(desired, info.config)
            refused = immutable_changes(diff)
            if refused:
                message = "NATS cannot change " + "; ".join(refused) + " on a live stream; the stream was left as it is"
                return live_fields(name, info), [Cond.false("Ready", "ImmutableFieldChanged", message)]
            if diff:
                info = await js.update_stream(desired)
                log.info("updated stream %s: %s", name, ", ".join(sorted(diff)))
        for consumer in render_consumer_configs(spec):
            await js.add_consumer(name, consumer)
        info = await js.stream_info(name)
        await _export_live_state(js, namespace, name, info)
    except APIError as exc:
        message = f"{exc.description or exc} (code {exc.err_code})"
        return {"streamName": name}, [Cond.false("Ready", "JetStreamError", message)]
    kind = "bucket" if spec.kind == "KeyValue" else "stream"
    return live_fields(name, info), [Cond.true("Ready", "InSync", f"{kind} {name} matches the spec")]


async def delete_stream(kube: Kube, hubs: HubConnections, namespace: str, spec: FleetStreamSpec) -> bool:
    """True when the stream is gone (or was never there)."""
    js = await _jetstream(kube, hubs, namespace, spec)
    name = render_stream_config(spec).name
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(name)
    log.info("deleted stream %s (deletionPolicy Delete)", name)
    return True
