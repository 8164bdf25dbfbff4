"""The one Jinja environment for nats-server configs: strict (an undefined name is an error, not an
empty string) and with filters that quote every string, so no value can break the config syntax."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from typing import Any

import jinja2


def nats_str(value: str) -> str:
    """A JSON string literal, which the nats-server config parser reads verbatim (a quoted `$` is
    not a variable reference, so `$JS...` subjects stay intact)."""
    if not isinstance(value, str):
        raise TypeError(f"nats_str expects a string, got {type(value).__name__}")
    return json.dumps(value)


def nats_list(values: Iterable[str]) -> str:
    """A JSON array of quoted strings."""
    return "[" + ", ".join(nats_str(v) for v in values) + "]"


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fleetlattice", "render/templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["nats_str"] = nats_str
    env.filters["nats_list"] = nats_list
    return env


def render_template(name: str, **context: Any) -> str:
    return _environment().get_template(name).render(**context)
