"""Where things live inside a nats-server container. The config renderers and the manifest renderers
both read these, so a mounted volume and the path in the config can never disagree; tests running
real servers pass a ServerPaths rooted in a temporary directory instead."""

from __future__ import annotations

from dataclasses import dataclass

HUB_CONF_KEY = "nats.conf"
# The hub's silo and FleetUser users are split over this many files, one ConfigMap each: 8 MiB in all, room for
# about 5,000 silos per hub. Fixed, because each part is a volume source of the pod template.
HUB_USER_PARTS = 8
LEAF_CONF_KEY = "leaf.conf"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
TLS_CA_KEY = "ca.crt"
# nats-server refuses a lame_duck_duration under 30s; the pod's grace period must outlast it.
LAME_DUCK_SECONDS = 30
TERMINATION_GRACE_SECONDS = 60


@dataclass(frozen=True)
class ServerPaths:
    """Directories of one nats-server container (defaults: the paths the pods mount)."""

    config_dir: str = "/etc/nats-config"
    pid_dir: str = "/var/run/nats"
    data_dir: str = "/data"
    tls_dir: str = "/etc/nats-tls"

    def config_file(self, key: str) -> str:
        return f"{self.config_dir}/{key}"

    @property
    def pid_file(self) -> str:
        """Written by nats-server; read by the reloader sidecar and by the preStop lame-duck signal."""
        return f"{self.pid_dir}/nats.pid"

    @property
    def store_dir(self) -> str:
        return f"{self.data_dir}/jetstream"

    @property
    def tls_cert(self) -> str:
        return f"{self.tls_dir}/{TLS_CERT_KEY}"

    @property
    def tls_key(self) -> str:
        return f"{self.tls_dir}/{TLS_KEY_KEY}"

    @property
    def tls_ca(self) -> str:
        return f"{self.tls_dir}/{TLS_CA_KEY}"


CONTAINER_PATHS = ServerPaths()


def hub_users_key(part: int) -> str:
    """The file (and ConfigMap key) of one part of a hub's users."""
    return f"users-{part}.conf"
