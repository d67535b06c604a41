"""Secrets at rest in the leader's SQL (users' secret keys, chunk servers' keys), sealed with Fernet
(``cryptography``: AES-128-CBC plus HMAC-SHA256, authenticated) under a key derived from the cluster secret.

They must be recoverable, not hashed: AWS SigV4 (the S3 API) signs with the secret itself, so a user app
needs the plain secret to check a signature. A copy of the database alone reveals none of them. During a
cluster-secret rotation the previous secret's key still opens old values (``MultiFernet``), and
:meth:`Sealer.reseal` moves a value to the current key.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.auth.cluster_secret import ClusterSecret, derive_key

PURPOSE = "stored-secrets"


class SealError(Exception):
    """A sealed value cannot be opened with the cluster's keys (another cluster's, or tampered with)."""


class Sealer:
    """Seals and opens small secrets with the cluster's keys (current first, then the previous one)."""

    def __init__(self, secret: ClusterSecret) -> None:
        keys = [secret.current] + ([secret.previous] if secret.previous is not None else [])
        self._fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(derive_key(k, PURPOSE))) for k in keys])

    def seal(self, plain: bytes) -> bytes:
        return self._fernet.encrypt(plain)

    def open(self, sealed: bytes) -> bytes:
        """Raises :class:`SealError` when no key of this cluster opens ``sealed``."""
        try:
            return self._fernet.decrypt(bytes(sealed))
        except InvalidToken:
            raise SealError("a stored secret cannot be opened with this cluster's secret") from None

    def reseal(self, sealed: bytes) -> bytes:
        """``sealed`` under the current key (after a rotation)."""
        try:
            return self._fernet.rotate(bytes(sealed))
        except InvalidToken:
            raise SealError("a stored secret cannot be opened with this cluster's secret") from None
