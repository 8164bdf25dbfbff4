"""Shared building blocks of every kind: the camelCase base model, constrained string types,
Kubernetes-style conditions, and parsers for the duration and size strings users write."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from fleetlattice.api.bus import RESERVED_SILO_NAMES

# A DNS label contains no '.', '*', '>' or whitespace, so it is also a single NATS token.
SILO_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_TOKEN = r"([^.*>\s]+|\*)"
# '*' only as a whole token, '>' only as the whole last token.
SUBJECT_PATTERN = rf"^(>|{_TOKEN}(\.{_TOKEN})*(\.>)?)$"
# At most five digits per part and 16 characters in all: 99999w99999w999d is about 3,800 years, so no
# duration a user can write overflows a datetime (an unbounded 99999999999999999999999w did, in three places).
DURATION_PATTERN = r"^([0-9]{1,5}(ms|s|m|h|d|w))+$"
ZERO_DURATION_PATTERN = r"^(0+(ms|s|m|h|d|w))+$"
SIZE_PATTERN = r"^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$"
STREAM_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"



def _not_reserved(silo: str) -> str:
    if silo in RESERVED_SILO_NAMES:
        raise ValueError(RESERVED_SILO_MESSAGE)
    return silo


RESERVED_SILO_MESSAGE = (
    "a silo may not be named after a word of the subject map (" + ", ".join(RESERVED_SILO_NAMES)
    + "): it would gain another silo's subjects"
)
SiloName = Annotated[str, StringConstraints(pattern=SILO_NAME_PATTERN, max_length=63), AfterValidator(_not_reserved)]
Subject = Annotated[str, StringConstraints(pattern=SUBJECT_PATTERN, max_length=255)]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=16)]
Size = Annotated[str, StringConstraints(pattern=SIZE_PATTERN, max_length=32)]
StreamName = Annotated[str, StringConstraints(pattern=STREAM_NAME_PATTERN, min_length=1, max_length=64)]
ObjectName = Annotated[str, StringConstraints(pattern=K8S_NAME_PATTERN, min_length=1, max_length=253)]
# Namespaces and Service names: RFC 1123 labels.
DnsLabel = Annotated[str, StringConstraints(pattern=SILO_NAME_PATTERN, min_length=1, max_length=63)]


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, enforced twice from one definition: by the API server as a CEL
    x-kubernetes-validations rule, and by the model so unit code and CLIs see the same message."""

    cel: str
    message: str
    holds: Callable[[Any], bool]


def _add_rules_to_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [{"rule": r.cel, "message": r.message} for r in rules]


class ApiModel(BaseModel):
    """Spec models: camelCase on the wire, unknown fields refused so a typo is an error."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", json_schema_extra=_add_rules_to_schema
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        broken = [rule.message for rule in self.rules if not rule.holds(self)]
        if broken:
            raise ValueError("; ".join(broken))
        return self

    def wire(self) -> dict[str, Any]:
        """The JSON form the API server stores (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Status is written by the operator and read back; tolerate fields a newer operator added."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    rules: ClassVar[tuple[Rule, ...]] = ()


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A Kubernetes-convention condition (metav1.Condition)."""

    type: str = Field(description="Type of condition in CamelCase, e.g. Ready.")
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    reason: str = Field(description="Machine-readable CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable details about the last transition.")
    last_transition_time: datetime | None = Field(default=None, description="When the condition last changed status.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was set against."
    )


class StatusBase(StatusModel):
    """What every kind reports: the generation it acted on and its conditions."""

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the operator last reconciled."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Current state as Kubernetes conditions; Ready is always present once reconciled.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w)")
_SIZE_UNITS = {
    "": 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_SIZE = re.compile(r"([0-9]+)(Ki|Mi|Gi|Ti|K|M|G|T)?")


def duration_seconds(value: str) -> float:
    """'1h30m' -> 5400.0. The pattern already guarantees the shape."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"invalid duration {value!r}: expected e.g. 30s, 15m, 24h, 7d")
    return sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(value))


def size_bytes(value: str) -> int:
    """'5Gi' -> 5368709120, Kubernetes quantity suffixes."""
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"invalid size {value!r}: expected e.g. 512Mi, 5Gi, 1M")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2) or ""]


def immutable(message: str) -> dict[str, Any]:
    """CEL rule for a field that cannot change once set."""
    return {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": message}]}


def silo_field(description: str) -> Any:
    """The `silo` field of a kind: immutable, and never a reserved subject word (checked by the API server
    with the same message the model gives)."""
    words = ", ".join(f"'{w}'" for w in RESERVED_SILO_NAMES)
    rules = [{"rule": "self == oldSelf", "message": "silo is immutable"},
             {"rule": f"!(self in [{words}])", "message": RESERVED_SILO_MESSAGE}]
    return Field(description=description, json_schema_extra={"x-kubernetes-validations": rules})
