"""The operator's own log: routine successes of timers and watch-event handlers are dropped, the audit trail
of change handlers and every failure are kept."""

from __future__ import annotations

import inspect
import logging

import pytest

from fleetlattice.cli.run import RoutineSuccess


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


@pytest.mark.parametrize("message", ["Timer 'leaf_status' succeeded.", "Handler 'leaf_deleted' succeeded.",
                                     "Handler 'install_seen' succeeded."])
def test_routine_successes_are_dropped(message: str) -> None:
    assert not RoutineSuccess().filter(record(message))


@pytest.mark.parametrize(("message", "level"), [
    ("Handler 'leaf_changed' succeeded.", logging.INFO),
    ("Timer 'leaf_resync' failed with an exception. Will retry.", logging.ERROR),
    ("Timer 'leaf_status' succeeded.", logging.WARNING),
])
def test_the_audit_trail_and_failures_are_kept(message: str, level: int) -> None:
    assert RoutineSuccess().filter(record(message, level))


def test_the_watch_event_handlers_it_names_exist() -> None:
    from fleetlattice.handlers import install, leaf, user

    handlers = {name for module in (install, leaf, user) for name, _ in inspect.getmembers(module, inspect.isfunction)}
    named = {prefix.split("'")[1] for prefix in RoutineSuccess.ROUTINE if prefix.startswith("Handler '")}
    assert named <= handlers
