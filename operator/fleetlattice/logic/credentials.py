"""Generated NATS identities (pure): one ed25519 NKey per user. The seed is made once and kept in a Secret;
only the public key ever reaches a server config. Generation is instant and the server checks a connection
by one signature (microseconds), where bcrypt cost seconds of CPU per hundred connects and queued them
past nats-py's connect handshake (bench/findings/bcrypt-connect-handshake.md)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import nkeys

# Secret.data keys, each after an optional prefix (`<hub>-auth` holds two identities).
USER_KEY, PUBLIC_KEY_KEY, SEED_KEY = "user", "nkey", "seed"


@dataclass(frozen=True)
class Credential:
    """`user` names the identity for people and logs; the server only knows `public_key`."""

    user: str
    seed: str
    public_key: str

    @classmethod
    def generate(cls, user: str) -> Credential:
        return cls.from_seed(user, nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode())

    @classmethod
    def from_seed(cls, user: str, seed: str) -> Credential:
        """Raises ValueError for anything but a user seed (`SU...`)."""
        try:
            pair = nkeys.from_seed(bytearray(seed.encode()))
        except (nkeys.NkeysError, ValueError, TypeError) as exc:
            raise ValueError(f"not an NKey seed: {exc}") from exc
        public = pair.public_key.decode()
        if not public.startswith("U"):
            raise ValueError("not a user NKey seed")
        return cls(user, seed, public)

    def secret_data(self, prefix: str = "") -> dict[str, str]:
        """Base64 values for Secret.data, keyed `<prefix>user`, `<prefix>nkey` (public), `<prefix>seed`."""
        return {f"{prefix}{k}": b64(v) for k, v in ((USER_KEY, self.user), (PUBLIC_KEY_KEY, self.public_key),
                                                      (SEED_KEY, self.seed))}

    @classmethod
    def from_secret(cls, data: dict[str, str], prefix: str = "") -> Credential | None:
        """None when the Secret holds no valid seed, including the password Secrets of releases before NKeys:
        the caller then generates an identity, which is the whole migration."""
        try:
            return cls.from_seed(_unb64(data[f"{prefix}{USER_KEY}"]), _unb64(data[f"{prefix}{SEED_KEY}"]))
        except (KeyError, ValueError):
            return None


def b64(value: str) -> str:
    """A Secret's .data encoding."""
    return base64.b64encode(value.encode()).decode()


def _unb64(value: str) -> str:
    return base64.b64decode(value).decode()
