"""A hub server that missed a config change is found by the digest it reports and asked to reload.

The reloader sidecar signals only for changes it sees after its own start, which first waits for the server's pid
file (looking every 4 s) and then takes the files as they are: a write in between is never loaded. Every server
then kept its older config while its load time, later than the write, said it was current: the FleetHub showed
Ready and the new silos' leaves could not sign in (an e2e run waited ten minutes for twenty of them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats.errors
import pytest

from fleetlattice.clients.hub_connections import HubConnections
from fleetlattice.logic.hub_status import RELOAD_GRACE, ServerSnapshot, loaded_digest, missed_reload, reload_pending
from fleetlattice.render.hub_conf import render_hub_conf
from fleetlattice.render.names import HubRef
from nats_processes import eventually
from render_fixtures import HUB, credential, hub_users, running_hub


def _snapshot(varz: dict) -> ServerSnapshot:
    return ServerSnapshot("eose-hub-0", True, varz=varz)


async def test_a_server_that_missed_a_change_reports_the_older_digest_and_reloads_when_asked(
        nats_server: Path, tmp_path: Path) -> None:
    async with running_hub(nats_server, tmp_path, hub_users("ct-a")) as hub:
        first = render_hub_conf(HUB, hub.spec, hub_users("ct-a"), hub.paths)
        assert loaded_digest(_snapshot(await hub.server.monitor("varz"))) == first.digest

        hub.rewrite(hub_users("ct-a", "ct-b"))  # the files change; no SIGHUP comes
        written = render_hub_conf(HUB, hub.spec, hub_users("ct-a", "ct-b"), hub.paths)
        varz = await hub.server.monitor("varz")
        # Written before the server started, as when the files it mounted were older than the write: by the
        # time of its load the server looks current, by its digest it is not.
        late = datetime.now(UTC) - RELOAD_GRACE - timedelta(seconds=1)
        assert reload_pending([_snapshot(varz)], late) == []
        assert reload_pending([_snapshot(varz)], late, written.digest) == ["eose-hub-0"]
        assert [s.pod for s in missed_reload([_snapshot(varz)], written.digest, late, datetime.now(UTC))] == [
            "eose-hub-0"]
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await hub.connect_as("ct-b", allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)

        connections = HubConnections(kube=None, mode="dns")  # type: ignore[arg-type]  # the URL is given below

        async def local_url(_hub: HubRef) -> str:
            return hub.client_url

        connections.client_url = local_url  # type: ignore[method-assign]
        await connections.request_reload(HUB, credential("sys"), varz["server_id"])

        async def reloaded() -> bool:
            return loaded_digest(_snapshot(await hub.server.monitor("varz"))) == written.digest

        await eventually("the server to load the written config", reloaded)
        await (await hub.connect_as("ct-b")).close()


def test_a_server_is_asked_only_after_the_grace_while_healthy_behind_and_not_rolling() -> None:
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    behind = ServerSnapshot("hub-0", True, varz={"server_id": "N0", "metadata": {"fleet_lattice_config": "old"}})
    current = ServerSnapshot("hub-1", True, varz={"server_id": "N1", "metadata": {"fleet_lattice_config": "new"}})
    down = ServerSnapshot("hub-2", False, varz={})
    servers = [behind, current, down]
    assert missed_reload(servers, "new", now - RELOAD_GRACE / 2, now) == []
    assert missed_reload(servers, "new", now - RELOAD_GRACE, now) == [behind]
    assert missed_reload(servers, None, now - RELOAD_GRACE, now) == []  # nothing rendered in this process yet
    assert missed_reload(servers, "new", now - RELOAD_GRACE, now, restart_rolling=True) == []
    assert reload_pending(servers, now, "new") == ["hub-0", "hub-2"]
