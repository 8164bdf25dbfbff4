"""Timestamps as Kubernetes and nats-server write them (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339 with nanoseconds (Go) or seconds (Kubernetes)."""
    if not value:
        return None
    # Python keeps microseconds; Go writes nanoseconds.
    value = re.sub(r"\.(\d{1,6})\d*", lambda m: "." + m.group(1).ljust(6, "0"), value.replace("Z", "+00:00"))
    return datetime.fromisoformat(value)


def utcnow() -> datetime:
    """Now, to the second: status times are stored at that precision."""
    return datetime.now(UTC).replace(microsecond=0)


def now_iso() -> str:
    return utcnow().isoformat().replace("+00:00", "Z")


def seconds_since(stamp: str | None, now: datetime | None = None) -> float:
    """Seconds since an RFC 3339 stamp (e.g. a deletionTimestamp); 0 when there is none yet."""
    then = parse_time(stamp)
    return 0.0 if then is None else ((now or datetime.now(UTC)) - then).total_seconds()
