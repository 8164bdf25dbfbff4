"""`fleetlattice user context`: a nats CLI context for a FleetUser, so `nats --context <name> ...` signs in as it.

The nats CLI keeps contexts in `<config>/nats/context/<name>.json` (ADR-21: `url`, `nkey` as a path to the seed
file, `inbox_prefix`, `ca`); the seed is written beside it, readable by its owner only."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetlattice.api.fleethub import FleetHubSpec
from fleetlattice.api.fleetuser import FleetUserSpec
from fleetlattice.clients.kube import Kube
from fleetlattice.logic.credentials import Credential
from fleetlattice.render.names import UserRef


class ContextError(Exception):
    """Something the user must fix first; the message says what."""


def nats_config_dir() -> Path:
    """Where the nats CLI looks for contexts: $XDG_CONFIG_HOME/nats, else ~/.config/nats."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "nats"


@dataclass(frozen=True)
class UserContext:
    name: str
    url: str
    seed: str
    inbox_prefix: str
    ca: str | None = None

    def files(self, directory: Path) -> dict[Path, str]:
        """The files of the context under the nats config `directory`: the seed, the CA, the context."""
        secrets = directory / "fleetlattice"
        seed_path, ca_path = secrets / f"{self.name}.nk", secrets / f"{self.name}-ca.crt"
        context: dict[str, Any] = {"description": f"FleetUser {self.name} (written by fleetlattice user context)",
                                   "url": self.url, "nkey": str(seed_path), "inbox_prefix": self.inbox_prefix}
        files = {seed_path: self.seed + "\n"}
        if self.ca:
            context["ca"] = str(ca_path)
            files[ca_path] = self.ca
        files[directory / "context" / f"{self.name}.json"] = json.dumps(context, indent=2) + "\n"
        return files


def write_files(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created owner-only before the seed is in it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)


async def user_context(kube: Kube, namespace: str, name: str, server: str | None, context: str | None) -> UserContext:
    user = await kube.get("FleetUser", namespace, name)
    if user is None:
        raise ContextError(f"FleetUser {namespace}/{name} not found (kubectl get fleetusers -n {namespace})")
    secret = await kube.get("Secret", namespace, UserRef(name).credentials_secret) or {}
    cred = Credential.from_secret(secret.get("data", {}))
    status = user.get("status") or {}
    if cred is None or not status.get("url"):
        raise ContextError(f"the NKey of FleetUser {name} is not generated yet; is the operator running? "
                           f"(kubectl describe fleetuser {name} -n {namespace})")
    hub = await kube.get("FleetHub", namespace, FleetUserSpec.model_validate(user["spec"]).hub) or {}
    hub_spec = FleetHubSpec.model_validate(hub.get("spec") or {})
    ca = None
    if hub_spec.tls.enabled and hub_spec.tls.secret_name:
        tls = await kube.get("Secret", namespace, hub_spec.tls.secret_name) or {}
        ca = base64.b64decode(tls.get("data", {}).get("ca.crt", "")).decode() or None
    return UserContext(context or name, server or status["url"], cred.seed, status["inboxPrefix"], ca)
