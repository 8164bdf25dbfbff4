"""Pinned versions, images and ports: the one place they are set."""

from typing import Final

NATS_SERVER_VERSION: Final = "2.15.1"
NATS_IMAGE: Final = f"docker.io/library/nats:{NATS_SERVER_VERSION}-alpine"
# The sidecar that turns a changed ConfigMap into a SIGHUP, as the NATS Helm chart does.
RELOADER_VERSION: Final = "0.23.0"
RELOADER_IMAGE: Final = f"docker.io/natsio/nats-server-config-reloader:{RELOADER_VERSION}"

CLIENT_PORT: Final = 4222
CLUSTER_PORT: Final = 6222
LEAFNODE_PORT: Final = 7422
MONITOR_PORT: Final = 8222

FIELD_MANAGER: Final = "fleet-lattice"
USER_AGENT: Final = "fleet-lattice-operator"
FLEET_ACCOUNT: Final = "FLEET"
SYSTEM_ACCOUNT: Final = "SYS"
# What a silo's own clients read their leaf NKey seed from (the agent, and the README's nats.js lines).
LOCAL_SEED_ENV: Final = "FLEET_NKEY_SEED"
