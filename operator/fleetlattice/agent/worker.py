"""One message off the install queue, start to finish: check it, run the plan, report, ack.

Process-then-ack: the message is acked only after its final report is stored on the hub, and the
ledger has recorded it. Dying anywhere before leaves the message unacked, JetStream redelivers it
after ack_wait, and the run either finds it in the ledger (just ack) or repeats an idempotent plan
whose reports the stream deduplicates."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from fleetlattice.agent.consumer import Backoff, kept_in_progress
from fleetlattice.agent.ledger import Ledger
from fleetlattice.agent.plan import InstallPlan, StepFailed
from fleetlattice.agent.reports import Reporter
from fleetlattice.api.base import duration_seconds
from fleetlattice.api.bus import ACCEPTED_STEP, bus_request_id
from fleetlattice.api.messages import MAX_MESSAGE_BYTES, MAX_NAME, InstallDone, InstallRequest, ScrubRequest, clip
from fleetlattice.api.siloinstall import SiloInstallSpec

log = logging.getLogger(__name__)

# A failed scrub is retried by redelivery (bounded by the consumer's max_deliver), after this pause.
SCRUB_RETRY_SECONDS = 30.0
# How long a final report is retried before the agent moves on to the silo's next request.
STORE_DEADLINE_SECONDS = 300.0
# A refusal is answered within this: the queue behind the refused message must not wait long.
REFUSAL_STORE_SECONDS = 30.0
# A scrub request has no deadline of its own; a scrub that hangs longer is given up and retried.
SCRUB_TIMEOUT_SECONDS = 600.0


class InvalidMessage(ValueError):
    """Not something the agent can ever act on: retrying it is pointless, so it is answered with a `failed`
    report under `request_id` (never a silent drop) and terminated."""

    def __init__(self, reason: str, request_id: str) -> None:
        super().__init__(reason)
        self.request_id = request_id


@dataclass(frozen=True)
class Incoming:
    message: InstallRequest | ScrubRequest
    # Published by hand, without a requestId: answered `accepted` first, so the operator records it.
    by_hand: bool = False


def parse(silo: str, subject: str, data: bytes, sequence: int, now: datetime) -> Incoming:
    """The message at stream `sequence`. One without a requestId was published by hand and is named
    after its sequence (api.bus.bus_request_id), so a redelivery is recognised in the ledger."""
    bus_id = bus_request_id(sequence)
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"{len(data)} bytes, over the {MAX_MESSAGE_BYTES} byte limit", bus_id)
    kind = subject.rsplit(".", 1)[-1]
    model = {"request": InstallRequest, "scrub": ScrubRequest}.get(kind)
    if model is None:
        raise InvalidMessage(f"unexpected subject {subject}", bus_id)
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidMessage(f"{kind} is not JSON: {error}", bus_id) from error
    if not isinstance(fields, dict):
        raise InvalidMessage(f"{kind} is not a JSON object", bus_id)
    rid = fields.get("requestId")
    if rid is None:
        return Incoming(_by_hand(silo, kind, fields, bus_id, now), by_hand=True)
    if not isinstance(rid, str) or not 0 < len(rid) <= MAX_NAME:
        raise InvalidMessage("requestId is not a short string", bus_id)
    try:
        message = model.model_validate(fields)
    except ValidationError as error:
        raise InvalidMessage(f"invalid {kind}: {_errors(error)}", rid) from error
    if isinstance(message, InstallRequest) and message.silo != silo:
        raise InvalidMessage(f"request {message.request_id} is for silo {message.silo}, this is {silo}", rid)
    return Incoming(message)


def _errors(error: ValidationError) -> list[dict[str, Any]]:
    # Without the input: a garbage message may be 64 KiB of anything.
    return error.errors(include_url=False, include_input=False)


def _by_hand(silo: str, kind: str, fields: dict[str, Any], rid: str, now: datetime) -> InstallRequest | ScrubRequest:
    """The seed's own form: `{"v":"v622"}` or `{"version":"v622","acr":...,"ns":...}` (every other field
    is a param), `{"reason":"engagement-complete"}` for a scrub. Held to a SiloInstall's limits, since the
    operator records it as one."""
    if kind == "scrub":
        return ScrubRequest(request_id=rid, reason=clip(str(fields.get("reason", ""))))
    version = fields.get("version", fields.get("v"))
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not version:
        raise InvalidMessage('request has no version: give "version" (or "v"), e.g. {"v":"v622"}', rid)
    params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items() if k not in ("version", "v")}
    try:
        spec = SiloInstallSpec.model_validate({"silo": silo, "version": version, "params": params})
    except ValidationError as error:
        raise InvalidMessage(f"request cannot be performed: {_errors(error)}", rid) from error
    return InstallRequest(request_id=rid, silo=silo, version=spec.version, params=spec.params, attempt=1,
                          deadline=now + timedelta(seconds=duration_seconds(spec.timeout)))


def _loop_deadline(deadline: datetime) -> float:
    """The request's wall-clock deadline on the event loop's clock; naive times are taken as UTC."""
    aware = deadline if deadline.tzinfo else deadline.replace(tzinfo=UTC)
    loop = asyncio.get_running_loop()
    return loop.time() + (aware - datetime.now(UTC)).total_seconds()


def _refused_for_good(error: nats.errors.Error) -> bool:
    """The hub will never store this report (too large, refused by the stream): retrying cannot help. A
    JetStream that is not there yet (503) can still come back."""
    if isinstance(error, nats.errors.MaxPayloadError):
        return True
    transient = isinstance(error, nats.js.errors.ServiceUnavailableError) or getattr(error, "code", None) == 503
    return isinstance(error, nats.js.errors.APIError) and not transient


async def _until_stored(what: str, publish: Callable[[], Awaitable[None]],
                        within: float = STORE_DEADLINE_SECONDS) -> bool:
    """Retry a final report until the hub has stored it: giving up would mean running the whole install
    again after redelivery. The message stays in progress meanwhile. Bounded: False once the hub refuses
    it for good or `within` seconds pass, so one unstorable report never wedges the silo's queue."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    backoff = Backoff()
    while True:
        try:
            await publish()
            return True
        except nats.errors.Error as error:
            if _refused_for_good(error) or loop.time() + backoff.next > end:
                log.error("could not store %s, giving up: %s", what, error)
                return False
            log.warning("could not store %s, retrying: %s", what, error)
            await backoff.wait()


class Worker:
    def __init__(self, silo: str, js: JetStreamContext, plan: InstallPlan, ledger: Ledger) -> None:
        self.silo = silo
        self.js = js
        self.plan = plan
        self.ledger = ledger
        self.active_request_id: str | None = None

    async def handle(self, msg: Msg, ack_wait: float) -> None:
        try:
            incoming = parse(self.silo, msg.subject, msg.data, msg.metadata.sequence.stream, datetime.now(UTC))
        except InvalidMessage as error:
            log.error("refusing message %s: %s", msg.metadata.sequence.stream, error)
            reason, reporter = str(error), Reporter(self.js, self.silo, error.request_id)
            await _until_stored(f"{error.request_id} failed",
                                lambda: reporter.failed(ACCEPTED_STEP, reason, retryable=False),
                                within=REFUSAL_STORE_SECONDS)
            await msg.term()
            return
        message = incoming.message
        outcome = self.ledger.outcome(message.request_id)
        if outcome is not None:
            log.info("%s already finished (%s), acking the redelivery", message.request_id, outcome)
            await msg.ack_sync()
            return
        log.info("%s: start (delivery %d)", message.request_id, msg.metadata.num_delivered)
        self.active_request_id = message.request_id
        try:
            async with kept_in_progress(msg, ack_wait / 3):
                if isinstance(message, InstallRequest):
                    await self._install(message, incoming.by_hand)
                elif not await self._scrub(message):
                    await msg.nak(delay=SCRUB_RETRY_SECONDS)
                    return
        finally:
            self.active_request_id = None
        await msg.ack_sync()

    async def _install(self, request: InstallRequest, by_hand: bool = False) -> None:
        reporter = Reporter(self.js, self.silo, request.request_id)
        if by_hand and not await _until_stored(f"{request.request_id} accepted", lambda: reporter.accepted(request)):
            await self._failed(reporter, ACCEPTED_STEP, "the accepted report could not be stored on the hub", False)
            return
        steps = self.plan.steps(request)
        result: dict[str, Any] = {}
        current = steps[0].name if steps else ""

        async def relay(step: str, index: int, total: int, message: str) -> None:
            nonlocal current
            current = step  # a step reporting progress of its own names where it is (a script's own steps)
            await reporter.progress(step, index, total, message)

        deadline = asyncio.timeout_at(_loop_deadline(request.deadline))
        try:
            async with deadline:
                for index, step in enumerate(steps, 1):
                    current = step.name
                    output = await step.run(relay)
                    result.update(output.result)
                    if output.message is not None:
                        await reporter.progress(step.name, index, len(steps), output.message)
        except StepFailed as error:
            await self._failed(reporter, current, error.error, error.retryable)
            return
        except Exception as error:
            if not deadline.expired():
                log.exception("%s: step %s crashed", request.request_id, current)
            message = "deadline exceeded" if deadline.expired() else f"{type(error).__name__}: {error}"
            await self._failed(reporter, current, message, retryable=True)
            return
        try:
            done = InstallDone.model_validate(
                {"version": request.version, "health": "ok", **result, "requestId": request.request_id}
            )
        except ValidationError as error:
            # The work is done but its result is garbage (say, pods: "six"): the plan needs fixing.
            await self._failed(reporter, current, f"invalid result {result}: {error}", retryable=False)
            return
        if not await _until_stored(f"{request.request_id} done", lambda: reporter.done(done)):
            await self._failed(reporter, current, "the done report could not be stored on the hub", retryable=False)
            return
        await self.ledger.finish(request.request_id, "done", installed=request, result=done.model_dump(by_alias=True))
        log.info("%s: done", request.request_id)

    async def _failed(self, reporter: Reporter, step: str, error: str, retryable: bool) -> None:
        log.warning("%s: failed at %s (retryable %s): %s", reporter.request_id, step, retryable, error)
        await _until_stored(f"{reporter.request_id} failed", lambda: reporter.failed(step, error, retryable))
        await self.ledger.finish(reporter.request_id, "failed")

    async def _scrub(self, request: ScrubRequest) -> bool:
        """True once scrubbed and reported; False if the plan could not scrub (retried by redelivery)."""
        try:
            async with asyncio.timeout(SCRUB_TIMEOUT_SECONDS):
                await self.plan.scrub(request, self.ledger.record.installed)
        except Exception:
            log.exception("%s: scrub failed", request.request_id)
            return False
        reporter = Reporter(self.js, self.silo, request.request_id)
        await _until_stored(f"{request.request_id} scrubbed", reporter.scrubbed)
        await self.ledger.finish(request.request_id, "scrubbed")
        log.info("%s: scrubbed", request.request_id)
        return True
