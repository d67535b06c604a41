"""The cluster secret: what makes a process a member of one RingFS cluster (Garage's ``rpc_secret``).

Every service reads ``CLUSTER_SECRET`` (hex, at least 32 bytes) or ``CLUSTER_SECRET_FILE`` (a file holding
that hex). The secret itself never travels: each use has its own key derived from it with HKDF-SHA256
(RFC 5869, ``cryptography``), so a key for one purpose says nothing about another:

* ``rpc``: signs and checks every internal request (``shared/auth/rpc_signing.py``);
* ``access-keys``: encrypts the users' secret keys at rest in the leader's SQL (Fernet);
* ``server-identity``: the leader's per-server health-check keys.

``CLUSTER_SECRET_PREVIOUS`` (optional, same format) is accepted while a new secret is rolled out: requests
signed with it still verify, new requests are signed with ``CLUSTER_SECRET`` (README, "Key rotation").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_SECRET_BYTES = 32
KEY_ID_LENGTH = 8  # hex characters naming a derived key in a signature, so a verifier can pick it
HOW_TO_MAKE_ONE = ("make one with `python -c 'import secrets; print(secrets.token_hex(32))'` and give the same "
                   "value to every service as CLUSTER_SECRET (or write it to a file named by CLUSTER_SECRET_FILE)")


class SecretError(ValueError):
    """The cluster secret is missing or malformed; the message says how to make one."""


def new_secret_hex() -> str:
    """A fresh cluster secret: 32 random bytes as hex."""
    return secrets.token_hex(MIN_SECRET_BYTES)


def parse_secret(text: str, where: str) -> bytes:
    """The secret bytes of hex ``text``. Raises :class:`SecretError` naming ``where`` it came from."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise SecretError(f"{where} is not hex; {HOW_TO_MAKE_ONE}") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise SecretError(f"{where} holds {len(raw)} bytes, fewer than {MIN_SECRET_BYTES}; {HOW_TO_MAKE_ONE}")
    return raw


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose``, derived from ``secret`` with HKDF-SHA256."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"ringfs/{purpose}/v1".encode()).derive(secret)


@dataclass(frozen=True)
class SigningKey:
    """A derived key and its public name (``key_id``: the first hex characters of its HMAC of a constant)."""

    key: bytes
    key_id: str

    @classmethod
    def for_purpose(cls, secret: bytes, purpose: str) -> "SigningKey":
        key = derive_key(secret, purpose)
        return cls(key, hmac.new(key, b"key-id", hashlib.sha256).hexdigest()[:KEY_ID_LENGTH])


@dataclass(frozen=True)
class ClusterSecret:
    """The current secret and, during a rotation, the previous one."""

    current: bytes
    previous: bytes | None = None

    @classmethod
    def load(cls, value: str | None, file: Path | None, previous: str | None = None) -> "ClusterSecret":
        """From ``CLUSTER_SECRET`` / ``CLUSTER_SECRET_FILE`` (and ``CLUSTER_SECRET_PREVIOUS``). Raises
        :class:`SecretError` when none is given or it is malformed."""
        if value:
            current = parse_secret(value, "CLUSTER_SECRET")
        elif file is not None:
            try:
                current = parse_secret(Path(file).read_text(), f"CLUSTER_SECRET_FILE {file}")
            except OSError as exc:
                raise SecretError(f"CLUSTER_SECRET_FILE {file} cannot be read: {exc.strerror}") from None
        else:
            raise SecretError("no cluster secret: set CLUSTER_SECRET or CLUSTER_SECRET_FILE; " + HOW_TO_MAKE_ONE
                              + " (or INSECURE_NO_AUTH=true to run without one, which anyone can then use)")
        return cls(current, parse_secret(previous, "CLUSTER_SECRET_PREVIOUS") if previous else None)

    def signing_keys(self, purpose: str) -> list[SigningKey]:
        """The keys for ``purpose``: the current one first, then the previous secret's."""
        keys = [SigningKey.for_purpose(self.current, purpose)]
        if self.previous is not None:
            keys.append(SigningKey.for_purpose(self.previous, purpose))
        return keys

    def key(self, purpose: str) -> bytes:
        """The current secret's key for ``purpose``."""
        return derive_key(self.current, purpose)
