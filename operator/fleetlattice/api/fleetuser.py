"""FleetUser: a hub-side identity for a person or an app (DESIGN.md, FleetUser)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fleetlattice.api.base import ApiModel, ObjectName, Rule, SiloName, StatusBase, StreamName, Subject
from fleetlattice.api.bus import INSTALL_STREAM

MAX_SUBJECTS = 32
MAX_NAMED = 16
# A consumer name is one token of a JetStream API subject.
CONSUMER_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"

Role = Literal["Observer", "Installer", "Ingest"]
ROLE_DESCRIPTION = (
    "Observer: receive fleet.> and read FLEET_STATE and the standard streams (nats sub, nats kv watch). "
    "Installer: publish fleet.install.<silo>.request and .scrub and receive fleet.install.<silo>.> for the "
    "silos in spec.silos (every silo when empty). Ingest: pull and ack the durable consumer spec.ingest names, "
    "which the operator creates."
)
# Extra subjects are plain NATS subjects: JetStream's API (`$JS.`, `$KV.`…) is granted through roles and
# spec.read only, and the user's inbox is rendered for it, so an extra can neither widen JetStream access nor
# read another client's replies.
_EXTRA_CEL = "!s.startsWith('$') && !s.startsWith('_INBOX')"
_EXTRA_MESSAGE = ("extra permissions name plain subjects: JetStream ($JS., $KV., ...) is granted by roles and read, "
                  "and inboxes are the user's own")


def _plain(subject: str) -> bool:
    return not subject.startswith(("$", "_INBOX"))


class SubjectRules(ApiModel):
    """Allow and deny lists of one direction; deny wins."""

    rules = (
        Rule(f"(!has(self.allow) || self.allow.all(s, {_EXTRA_CEL})) && "
             f"(!has(self.deny) || self.deny.all(s, {_EXTRA_CEL}))",
             _EXTRA_MESSAGE, lambda r: all(map(_plain, [*r.allow, *r.deny]))),
    )

    allow: list[Subject] = Field(default_factory=list, max_length=MAX_SUBJECTS, description="Subjects allowed.")
    deny: list[Subject] = Field(default_factory=list, max_length=MAX_SUBJECTS, description="Subjects denied.")


class UserPermissions(ApiModel):
    """Subjects on top of the roles'. Whatever is listed, a FleetUser never publishes what only silos publish
    (install reports, fleet.events.>, fleet.state.>): a hub-side identity cannot speak for a silo."""

    publish: SubjectRules = Field(default_factory=SubjectRules, description="What the user may publish.")
    subscribe: SubjectRules = Field(default_factory=SubjectRules, description="What the user may receive.")


class ReadAccess(ApiModel):
    """Streams and KV buckets the user may read: info, get, and its own ephemeral consumers (what nats stream
    view, nats kv get/watch and a watcher app do). Never FLEET_INSTALL, a work queue: a reader's consumer there
    would take requests from the silos' agents (subscribe to fleet.install.> to watch the bus instead)."""

    rules = (
        Rule(f"!has(self.streams) || !self.streams.exists(s, s == '{INSTALL_STREAM}')",
             f"{INSTALL_STREAM} is the install work queue: watch it with subscribe fleet.install.>, not read",
             lambda r: INSTALL_STREAM not in r.streams),
    )

    streams: list[StreamName] = Field(default_factory=list, max_length=MAX_NAMED, description="Stream names.")
    buckets: list[StreamName] = Field(default_factory=list, max_length=MAX_NAMED, description="KV bucket names.")


class IngestConsumer(ApiModel):
    """A durable pull consumer the operator creates on the hub for this user, who may only fetch and ack it."""

    rules = (
        Rule(f"self.stream != '{INSTALL_STREAM}'", f"{INSTALL_STREAM} is read by the silos' agents only",
             lambda c: c.stream != INSTALL_STREAM),
    )

    stream: StreamName = Field(description="Stream to consume, e.g. FLEET_MDSMS.")
    durable: str = Field(min_length=1, max_length=64, pattern=CONSUMER_NAME_PATTERN,
                         description="Durable consumer name, e.g. merostone.")
    filter_subject: Subject | None = Field(None, description="Only these subjects of the stream (default: all).")


class FleetUserSpec(ApiModel):
    """Desired identity and permissions."""

    rules = (
        Rule("(has(self.ingest) && has(self.roles) && self.roles.exists(r, r == 'Ingest')) || "
             "(!has(self.ingest) && (!has(self.roles) || !self.roles.exists(r, r == 'Ingest')))",
             "role Ingest and spec.ingest go together", lambda s: (s.ingest is not None) == ("Ingest" in s.roles)),
    )

    hub: ObjectName = Field(description="Name of the FleetHub (same namespace) the user signs in to.")
    roles: list[Role] = Field(default_factory=list, max_length=3, description=ROLE_DESCRIPTION,
                              json_schema_extra={"x-kubernetes-list-type": "set"})
    silos: list[SiloName] = Field(default_factory=list, max_length=256,
                                  description="Silos the Installer role reaches (empty: every silo).",
                                  json_schema_extra={"x-kubernetes-list-type": "set"})
    read: ReadAccess = Field(default_factory=ReadAccess, description="Streams and buckets to read, besides roles'.")
    ingest: IngestConsumer | None = Field(None, description="The Ingest role's durable consumer.")
    permissions: UserPermissions = Field(default_factory=UserPermissions, description="Extra subjects.")


class FleetUserStatus(StatusBase):
    """What a client needs to sign in."""

    credentials_secret: str = Field("", description="Secret holding the user's NKey (user, nkey, seed, url).")
    public_key: str = Field("", description="The user's public NKey, as the hub config holds it.")
    url: str = Field("", description="The hub's client URL.")
    inbox_prefix: str = Field("", description="The user's reply inbox prefix (nats --inbox-prefix).")
    ingest_consumer: str = Field("", description="The Ingest durable the operator made, as <stream>/<durable>.")
