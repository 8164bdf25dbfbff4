"""The `builtin` plan: render the manifests directory for the request, server-side apply it to the
silo's cluster, wait for its Deployments/StatefulSets to roll out, and count their ready pods.

Applying the same manifests again is a no-op for the cluster, which makes a re-run after a crash safe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from fleetlattice.agent.cluster import Cluster
from fleetlattice.agent.manifests import (
    Manifest,
    ManifestError,
    describe,
    owned_by_agent,
    ready_pods,
    render_manifests,
    rolled_out,
    workloads,
)
from fleetlattice.agent.plan import ProgressSink, Step, StepFailed, StepOutput
from fleetlattice.api.messages import InstallRequest, ScrubRequest

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
# A scrub request carries no deadline; deleting a namespace's worth of objects takes well under this.
SCRUB_WAIT_SECONDS = 300.0


class BuiltinPlan:
    def __init__(self, manifests_dir: Path, silo: str, cluster: Cluster, namespaces: frozenset[str] = frozenset()
                 ) -> None:
        """`namespaces`: where a request's params may place objects, besides the namespaces the templates
        name by default (`params.get("ns", "eose-entry")` declares eose-entry)."""
        self.manifests_dir = manifests_dir
        self.silo = silo
        self.cluster = cluster
        self.namespaces = namespaces | _template_namespaces(manifests_dir, silo)

    def _render(self, version: str, params: dict[str, str]) -> list[Manifest]:
        try:
            return render_manifests(self.manifests_dir, self.silo, version, params, self.namespaces)
        except ManifestError as error:
            raise StepFailed(str(error), retryable=False) from error

    async def _refuse_foreign(self, manifests: list[Manifest]) -> None:
        """An object of the same name that this silo's agent did not create is someone else's: a forced apply
        would take it over and a scrub would delete it."""
        for manifest in manifests:
            live = await self.cluster.get(manifest)
            if live is not None and not owned_by_agent(live, self.silo):
                raise StepFailed(f"{describe(manifest)} exists and was not created by silo {self.silo}'s agent; "
                                 "refusing to take it over", retryable=False)

    def steps(self, request: InstallRequest) -> list[Step]:
        # The steps share what the first one renders. The rollout wait is bounded by the request's
        # deadline, which the runner enforces around all steps.
        rendered: list[Manifest] = []

        async def render(_: ProgressSink) -> StepOutput:
            rendered[:] = await asyncio.to_thread(self._render, request.version, request.params)
            return StepOutput(f"rendered {len(rendered)} objects")

        async def apply(_: ProgressSink) -> StepOutput:
            await self._refuse_foreign(rendered)
            for manifest in rendered:
                await self.cluster.apply(manifest)
                log.info("%s: applied %s", request.request_id, describe(manifest))
            return StepOutput(f"applied {len(rendered)} objects")

        async def rollout(_: ProgressSink) -> StepOutput:
            async def all_rolled_out() -> bool:
                live = [await self.cluster.get(w) for w in workloads(rendered)]
                return all(obj is not None and rolled_out(obj) for obj in live)

            await _poll_until(all_rolled_out)
            return StepOutput(f"{len(workloads(rendered))} workloads rolled out")

        async def verify(_: ProgressSink) -> StepOutput:
            live = [obj for obj in [await self.cluster.get(w) for w in workloads(rendered)] if obj is not None]
            pods = ready_pods(live)
            return StepOutput(f"{pods} pods ready", result={"pods": pods, "health": "ok"})

        return [Step("render", render), Step("apply", apply), Step("rollout", rollout), Step("verify", verify)]

    async def scrub(self, request: ScrubRequest, installed: InstallRequest | None) -> None:
        """Delete, in reverse order, what the installed version's manifests define, and wait until it is
        gone. Without a record of the install, the templates are rendered with no version and no params."""
        rendered = self._render(installed.version if installed else "", installed.params if installed else {})
        manifests = []
        for manifest in rendered:
            live = await self.cluster.get(manifest)
            if live is not None and owned_by_agent(live, self.silo):
                manifests.append(manifest)
            elif live is not None:
                log.warning("scrub leaves %s: not created by silo %s's agent", describe(manifest), self.silo)
        for manifest in reversed(manifests):
            await self.cluster.delete(manifest)

        async def all_gone() -> bool:
            return all([await self.cluster.get(m) is None for m in manifests])

        try:
            async with asyncio.timeout(SCRUB_WAIT_SECONDS):
                await _poll_until(all_gone)
        except TimeoutError as error:
            raise StepFailed(f"objects still present after {SCRUB_WAIT_SECONDS:.0f}s") from error


def _template_namespaces(directory: Path, silo: str) -> frozenset[str]:
    """The namespaces the templates name when the request gives no params: what the silo declared by writing
    its templates. Templates that need params to render declare none this way (pass agent --namespace)."""
    try:
        manifests = render_manifests(directory, silo, "", {})
    except ManifestError:
        return frozenset()
    return frozenset(filter(None, (m["metadata"]["name"] if m["kind"] == "Namespace" else m["metadata"].get("namespace")
                                   for m in manifests)))


async def _poll_until(condition: Callable[[], Awaitable[bool]]) -> None:
    """The API server offers no event to await here (a watch is overkill for a handful of objects)."""
    while not await condition():  # noqa: ASYNC110
        await asyncio.sleep(POLL_SECONDS)
