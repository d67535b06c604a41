"""A chunk server's own key: proof that a health-check answer or a re-registration comes from the server
id it names, and not from another member (docs/failure-handling.md, "Membership").

The leader issues a random key to a server id at its first registration (sealed in the leader's SQL,
kept by the server in ``DATA_DIR/server_key``, mode 0600). Other members hold the cluster secret but not
this key, so none of them can answer a health check for another id, or re-register it elsewhere.

* health check: the leader sends a fresh challenge; the server answers ``HMAC(key, "health" | id |
  challenge)``;
* re-registration of a known id: ``HMAC(key, "register" | id | advertise URL)`` (the request itself is
  cluster-signed with a nonce, so it cannot be replayed).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_BYTES = 32
KEY_FILE = "server_key"


def new_server_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _mac(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def health_proof(key: bytes, server_id: str, challenge: str) -> str:
    return _mac(key, "health", server_id, challenge)


def registration_proof(key: bytes, server_id: str, advertise_url: str) -> str:
    return _mac(key, "register", server_id, advertise_url)


def proof_matches(expected: str, given: object) -> bool:
    """Constant-time comparison of two proofs (``given`` may be anything a peer sent)."""
    return isinstance(given, str) and hmac.compare_digest(expected, given)


def load_server_key(data_dir: Path) -> bytes | None:
    """The key in ``data_dir/server_key``, or None before the first registration."""
    try:
        return bytes.fromhex((Path(data_dir) / KEY_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def save_server_key(data_dir: Path, key: bytes) -> None:
    """Write the key (mode 0600, temp file + fsync + rename)."""
    path = Path(data_dir) / KEY_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
