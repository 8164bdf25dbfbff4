"""Prometheus metrics of the operator: reconciles, install bus, hub connections, live streams."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("fleetlattice_reconciles_total", "Reconciles by kind and result", ["kind", "result"])
RECONCILE_SECONDS = Histogram("fleetlattice_reconcile_duration_seconds", "Reconcile duration by kind", ["kind"])
INSTALL_TRANSITIONS = Counter("fleetlattice_install_phase_transitions_total", "SiloInstall phase changes",
                              ["from_phase", "to_phase"])
INSTALL_SECONDS = Histogram("fleetlattice_install_duration_seconds", "First request to final phase, by outcome",
                            ["phase"], buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
BUS_MESSAGES = Counter("fleetlattice_bus_messages_total", "Agent reports by type and outcome", ["type", "outcome"])
HUB_CONNECTED = Gauge("fleetlattice_hub_connected", "1 while the operator's NATS connection to the hub is up",
                      ["namespace", "hub"])
STREAM_MESSAGES = Gauge("fleetlattice_stream_messages", "Messages in the stream", ["namespace", "stream"])
STREAM_BYTES = Gauge("fleetlattice_stream_bytes", "Bytes in the stream", ["namespace", "stream"])
CONSUMER_PENDING = Gauge("fleetlattice_consumer_num_pending", "Messages not yet delivered to the consumer",
                         ["namespace", "stream", "consumer"])
CONSUMER_ACK_PENDING = Gauge("fleetlattice_consumer_ack_pending", "Delivered but unacknowledged messages",
                             ["namespace", "stream", "consumer"])


def serve(port: int) -> None:
    start_http_server(port)


@asynccontextmanager
async def reconciling(kind: str) -> AsyncIterator[None]:
    """Counts and times one reconcile; an exception is counted as an error and re-raised."""
    started = time.monotonic()
    try:
        yield
    except Exception:
        RECONCILES.labels(kind, "error").inc()
        raise
    else:
        RECONCILES.labels(kind, "ok").inc()
    finally:
        RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)
