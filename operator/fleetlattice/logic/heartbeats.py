"""The silo agents' latest heartbeats, as the FLEET_STATE watch delivers them (pure memory)."""

from __future__ import annotations

from datetime import UTC, datetime

from fleetlattice.api.messages import SiloState


class SiloHeartbeats:
    """(namespace, silo) -> the agent's latest state. Pushed by one watch per hub, read by SiloLeaf
    status and the SiloInstall timer from memory instead of once per object per tick."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], SiloState] = {}

    def record(self, namespace: str, silo: str, state: SiloState) -> None:
        self._states[(namespace, silo)] = state

    def forget(self, namespace: str, silo: str) -> None:
        self._states.pop((namespace, silo), None)

    def latest(self, namespace: str, silo: str) -> SiloState | None:
        return self._states.get((namespace, silo))

    def age(self, namespace: str, silo: str, now: datetime | None = None) -> float | None:
        """Seconds since the silo's agent last reported its state; None if it never did."""
        state = self._states.get((namespace, silo))
        return None if state is None else ((now or datetime.now(UTC)) - state.ts).total_seconds()

    def __len__(self) -> int:
        return len(self._states)
