"""Generated NATS credentials (pure). A password is made once and kept in a Secret; only its
bcrypt hash ever reaches a server config. Hashing is deliberately slow, so the hash is stored
next to the password and reused: re-rendering the hub config then never changes it."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

import bcrypt

# URL-safe alphabet: the password also sits in the leaf's remote URL.
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PASSWORD_LENGTH = 32
BCRYPT_ROUNDS = 11


@dataclass(frozen=True)
class Credential:
    user: str
    password: str
    bcrypt_hash: str

    @classmethod
    def generate(cls, user: str) -> Credential:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
        return cls(user, password, hashed)

    def secret_data(self, prefix: str = "") -> dict[str, str]:
        """Base64 values for Secret.data, keyed `<prefix>user`, `<prefix>password`, `<prefix>bcrypt`."""
        return {f"{prefix}{k}": b64(v) for k, v in (("user", self.user), ("password", self.password),
                                                      ("bcrypt", self.bcrypt_hash))}

    @classmethod
    def from_secret(cls, data: dict[str, str], prefix: str = "") -> Credential | None:
        try:
            return cls(*(_unb64(data[f"{prefix}{k}"]) for k in ("user", "password", "bcrypt")))
        except (KeyError, ValueError):
            return None


def b64(value: str) -> str:
    """A Secret's .data encoding."""
    return base64.b64encode(value.encode()).decode()


def _unb64(value: str) -> str:
    return base64.b64decode(value).decode()
