"""The agent's reports on the install bus, each stored by the hub's FLEET_INSTALL stream.

Every report goes out with JetStream publish, so it counts as sent only once the stream has stored it,
and with a `Nats-Msg-Id` that is the same when a redelivered request is run again: the stream drops
what it already has (within its duplicate window) instead of storing a second `done`."""

from __future__ import annotations

import logging

import nats.errors
from nats.js.client import JetStreamContext

from fleetlattice.api.bus import ACCEPTED_STEP, MSG_ID_HEADER, install_subject, report_msg_id
from fleetlattice.api.messages import (
    MAX_NAME,
    MAX_STEPS,
    AcceptedRequest,
    BusMessage,
    InstallDone,
    InstallFailed,
    InstallProgress,
    InstallRequest,
    Scrubbed,
    clip,
)

log = logging.getLogger(__name__)

# A request ends with exactly one of these, so their message id needs no running index.
_FINAL_INDEX = 0


class Reporter:
    """Reports for one request. Progress reports are numbered 1, 2, ... in the order this run sends
    them: a re-run of an idempotent plan sends the same sequence, which the stream deduplicates."""

    def __init__(self, js: JetStreamContext, silo: str, request_id: str) -> None:
        self._js = js
        self._silo = silo
        self.request_id = request_id
        self._progress_sent = 0

    async def _publish(self, kind: str, index: int, message: BusMessage) -> None:
        ack = await self._js.publish(
            install_subject(self._silo, kind),
            message.encode(),
            headers={MSG_ID_HEADER: report_msg_id(self.request_id, kind, index)},
        )
        log.debug("%s %s stored as seq %s%s", self.request_id, kind, ack.seq, " (duplicate)" if ack.duplicate else "")

    async def progress(self, step: str, index: int, total: int, message: str) -> None:
        """Best effort: a lost progress report must not fail the install, the final report tells all."""
        self._progress_sent += 1
        report = InstallProgress(request_id=self.request_id, step=clip(step, MAX_NAME), index=min(index, MAX_STEPS),
                                 total=min(total, MAX_STEPS), message=clip(message))
        try:
            await self._publish("progress", self._progress_sent, report)
        except nats.errors.Error as error:
            log.warning("%s: progress report %d not stored: %s", self.request_id, self._progress_sent, error)

    async def accepted(self, request: InstallRequest) -> None:
        """The first answer to a request published by hand, stored (not best effort): it carries what was
        asked, from which the operator records the SiloInstall."""
        self._progress_sent += 1
        report = InstallProgress(request_id=self.request_id, step=ACCEPTED_STEP,
                                 message=f"accepted {request.version}, published by hand",
                                 request=AcceptedRequest(version=request.version, params=request.params))
        await self._publish("progress", self._progress_sent, report)

    async def done(self, report: InstallDone) -> None:
        await self._publish("done", _FINAL_INDEX, report)

    async def failed(self, step: str, error: str, retryable: bool) -> None:
        report = InstallFailed(request_id=self.request_id, step=clip(step, MAX_NAME), error=clip(error),
                               retryable=retryable)
        await self._publish("failed", _FINAL_INDEX, report)

    async def scrubbed(self) -> None:
        await self._publish("scrubbed", _FINAL_INDEX, Scrubbed(request_id=self.request_id))
