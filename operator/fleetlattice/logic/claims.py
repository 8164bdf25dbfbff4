"""Which of several objects claiming one thing (a silo, a stream) owns it (pure): the oldest."""

from __future__ import annotations

from collections.abc import Iterable


def oldest_claimant(claims: Iterable[tuple[str, str]], name: str) -> str:
    """The object that owns a claimed thing: the oldest of the live ones claiming it, given as
    (creationTimestamp, name) pairs; `name` itself when the claims do not list it yet."""
    return min(claims, default=("", name))[1]
