"""Pydantic models of the four kinds and of the install bus: the single source of truth."""

from fleetlattice.api.kinds import API_VERSION, GROUP, KINDS, VERSION, Kind

__all__ = ["API_VERSION", "GROUP", "KINDS", "VERSION", "Kind"]
