"""Every name of the install-bus contract (DESIGN.md "Subjects" and "Install bus messages"), in one place:
the operator, the silo agent, the permission templates and the benchmarks all take them from here."""

from __future__ import annotations

from typing import Final, Literal

INSTALL_STREAM: Final = "FLEET_INSTALL"
STATE_BUCKET: Final = "FLEET_STATE"
# The standard streams besides the install work queue (examples/ ships them): what an observer reads.
OBSERVED_STREAMS: Final = ("FLEET_EVENTS", "FLEET_MDSMS", "FLEET_LEAN")
# The hub's JetStream domain. A leafnode connection never carries the plain `$JS.API.>` (nor `$KV.>`):
# nats-server denies both on every leafnode whose two ends are not one extended JetStream domain.
# Naming the hub's domain makes it install `$JS.<domain>.API.>` -> `$JS.API.>` in its accounts, so
# silo agents reach the hub's JetStream from behind their leaf with nats-py `jetstream(domain=JS_DOMAIN)`.
JS_DOMAIN: Final = "fleet"
JS_DOMAIN_API: Final = f"$JS.{JS_DOMAIN}.API"

# The operator's one durable on every silo's reports.
OPERATOR_DURABLE: Final = "fleet-lattice-operator"

# Words the subject map uses in fixed positions (fleet.<word>.<silo>..., fleet.<silo>.<word>...). A silo
# with one of these names would gain another silo's subjects through the permission templates, e.g. silo
# `install` publishing fleet.install.scan.request, a request to silo `scan`; so no silo may be called that.
RESERVED_SILO_NAMES: Final = (
    "arc", "audit", "build", "campfire", "events", "install", "lean", "mdsms", "proof", "scan", "state",
)

# Where a SiloLeaf's extra permissions may reach: the silo's own subjects (fleet.<word>.<silo>.> and
# fleet.<silo>.>) and the fleet-wide subjects of the seeds that any silo may use. Never `>`, `$JS.>` or
# another silo's subjects, which would undo the silo's isolation.
# Not `state`: the state keys a silo writes are bounded by its declared aspects (SiloLeaf stateAspects).
SILO_OWNED_WORDS: Final = ("events", "mdsms", "arc")
SHARED_SUBJECT_PREFIXES: Final = ("fleet.campfire.", "fleet.lean.proof.")


def silo_subject_prefixes(silo: str) -> tuple[str, ...]:
    return (f"fleet.{silo}.", *(f"fleet.{word}.{silo}." for word in SILO_OWNED_WORDS), *SHARED_SUBJECT_PREFIXES)


# Operator -> agent and agent -> operator verbs of fleet.install.<silo>.<verb>.
RequestKind = Literal["request", "scrub"]
ReportKind = Literal["progress", "done", "failed", "scrubbed"]
REQUEST_KINDS: Final[tuple[RequestKind, ...]] = ("request", "scrub")
REPORT_KINDS: Final[tuple[ReportKind, ...]] = ("progress", "done", "failed", "scrubbed")

# A JetStream publish with this header is stored once within the stream's duplicate window.
MSG_ID_HEADER: Final = "Nats-Msg-Id"
# The events the agent itself publishes.
BOOT_EVENT: Final = "boot"


def install_subject(silo: str, kind: str) -> str:
    """fleet.install.<silo>.<kind>; `silo` may be `*` for a filter over every silo."""
    return f"fleet.install.{silo}.{kind}"


def parse_report_subject(subject: str) -> tuple[str, ReportKind] | None:
    """fleet.install.<silo>.<report kind> -> (silo, kind); None for anything else."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["fleet", "install"] or parts[3] not in REPORT_KINDS:
        return None
    return parts[2], parts[3]  # type: ignore[return-value]


# The agent's heartbeat is its own aspect of the silo's state: key `<silo>` is the silo's own publishers'
# (the seed's mrcp-agent puts pods and health there), which a heartbeat every few seconds would overwrite.
AGENT_STATE_ASPECT: Final = "agent"
# The aspects a silo may write when its SiloLeaf declares none (the seeds' gpu and memory).
DEFAULT_STATE_ASPECTS: Final = ("gpu", "memory")


def agent_state_key(silo: str) -> str:
    return f"{silo}.{AGENT_STATE_ASPECT}"


def state_subject(silo: str, aspect: str | None = None) -> str:
    """fleet.state.<silo>[.<aspect>], stored by FLEET_STATE's subject transform as key <silo>[.<aspect>]."""
    return f"fleet.state.{silo}" + (f".{aspect}" if aspect else "")


def event_subject(silo: str, event: str) -> str:
    return f"fleet.events.{silo}.{event}"


def agent_durable(silo: str) -> str:
    """Durable name of the silo agent's pull consumer on the install stream."""
    return f"agent-{silo}"


def inbox_prefix(silo: str) -> str:
    """Per-silo reply inbox prefix; agents connect with nats-py `inbox_prefix=inbox_prefix(silo).encode()`.
    The default `_INBOX.>` would be shared by every silo, letting one read another's replies."""
    return f"_INBOX_{silo}"


def user_inbox_prefix(user: str) -> str:
    """A FleetUser's reply inbox prefix. No silo name contains `_` and no object name does, so it is apart
    from every silo's and, with the name's dots made `_`, from every other user's (`a` and `a.b` would
    otherwise nest)."""
    return f"_INBOX_user_{user.replace('.', '_')}"


def request_id(uid: str, generation: int, attempt: int) -> str:
    """Stable for one attempt of one generation of one SiloInstall: a retried publish of the same attempt
    carries the same Nats-Msg-Id, so JetStream drops the duplicate. Starts with the install's uid, which
    is how a report names its install."""
    return f"{uid}-g{generation}-a{attempt}"


def attempt_of(rid: str) -> tuple[int, int] | None:
    """(generation, attempt) of a requestId made by request_id(); None for any other (a scrub's, one by hand)."""
    generation, _, attempt = rid[UID_LENGTH + 1:].partition("-a")
    if not (generation.startswith("g") and generation[1:].isdigit() and attempt.isdigit()):
        return None
    return int(generation[1:]), int(attempt)


def scrub_request_id(uid: str) -> str:
    return f"{uid}-scrub"


# A requestId's first characters are the SiloInstall's uid.
UID_LENGTH: Final = 36

# A request or scrub published by hand carries no requestId (`nats pub fleet.install.ct-fac.request
# '{"v":"v622"}'`): the agent names it after its place in FLEET_INSTALL, unique on the hub, and the
# operator records it as a SiloInstall with these marks.
BUS_REQUEST_PREFIX: Final = "bus-"
BUS_ORIGIN_LABEL: Final = "fleet.lattice.dev/origin"
BUS_ORIGIN: Final = "bus"
BUS_REQUEST_ANNOTATION: Final = "fleet.lattice.dev/request-id"
# The agent's first answer to a request published by hand: a progress report of this step.
ACCEPTED_STEP: Final = "accepted"


def bus_request_id(stream_sequence: int) -> str:
    return f"{BUS_REQUEST_PREFIX}{stream_sequence}"


def bus_install_name(silo: str, request_id: str) -> str:
    """The SiloInstall that records a request published by hand."""
    return f"{silo}-{request_id}"


def report_msg_id(request_id: str, kind: str, index: int) -> str:
    """Nats-Msg-Id of an agent report: a re-run of a redelivered request sends the same ids."""
    return f"{request_id}.{kind}.{index}"
