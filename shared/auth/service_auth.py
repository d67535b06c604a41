"""One service's cluster credential: how it signs the internal requests it makes and checks the ones it
gets, its ``/metrics`` token, and its TLS client context (README "Security").

Built once at start from the service's settings (:meth:`ClusterAuth.from_settings`). A service without a
cluster secret refuses to start (:class:`SecretError` says how to make one) unless
``INSECURE_NO_AUTH=true``, which signs nothing, checks nothing, and says so in the log at start and every
minute after.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from dataclasses import dataclass

from shared.auth.cluster_secret import ClusterSecret, SecretError, SigningKey
from shared.auth.rpc_signing import PURPOSE, AuthError, Verifier
from shared.config import ServiceSettings
from shared.errors import Unauthorized

log = logging.getLogger("ringfs.auth")

INSECURE_WARNING_INTERVAL = 60.0  # seconds between two repeats of the INSECURE_NO_AUTH warning
INSECURE_WARNING = ("INSECURE_NO_AUTH=true: this %s checks no credential; anyone who can reach its port can "
                    "read, write and delete every file. Set CLUSTER_SECRET and unset INSECURE_NO_AUTH.")

__all__ = ["ClusterAuth", "SecretError", "client_ssl_context"]


def client_ssl_context(settings: ServiceSettings) -> ssl.SSLContext | None:
    """The TLS context for internal calls: trusts ``TLS_CA_FILE`` (a private CA) on top of the system's
    roots; ``None`` (system defaults) without one."""
    if settings.tls_ca_file is None:
        return None
    return ssl.create_default_context(cafile=str(settings.tls_ca_file))


@dataclass
class ClusterAuth:
    """``secret`` is None only with ``INSECURE_NO_AUTH``."""

    service: str
    secret: ClusterSecret | None
    metrics_token: str | None = None

    def __post_init__(self) -> None:
        keys = self.secret.signing_keys(PURPOSE) if self.secret else []
        self.signer: SigningKey | None = keys[0] if keys else None
        self.verifier: Verifier | None = Verifier(keys) if keys else None

    @classmethod
    def from_settings(cls, settings: ServiceSettings, service: str) -> "ClusterAuth":
        """Raises :class:`SecretError` when no usable secret is set and ``INSECURE_NO_AUTH`` is off."""
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        value = settings.cluster_secret.get_secret_value() if settings.cluster_secret else None
        previous = settings.cluster_secret_previous.get_secret_value() if settings.cluster_secret_previous else None
        if settings.insecure_no_auth and not value and settings.cluster_secret_file is None:
            return cls(service, None, token)
        return cls(service, ClusterSecret.load(value, settings.cluster_secret_file, previous), token)

    @property
    def insecure(self) -> bool:
        return self.secret is None

    def check_internal(self, credential: str | None, method: str, target: str) -> None:
        """Raises :class:`Unauthorized` unless ``credential`` (the request's ``X-RingFS-Auth``) is a valid,
        fresh, unused cluster credential for ``method`` and ``target`` (path and query as sent)."""
        if self.verifier is None:
            return
        try:
            self.verifier.verify(credential, method, target)
        except AuthError as exc:
            raise Unauthorized(str(exc)) from None

    def check_metrics(self, authorization: str | None, credential: str | None, method: str, target: str) -> None:
        """``/metrics``: ``Authorization: Bearer <METRICS_TOKEN>`` when a token is set (compared in
        constant time), else the cluster credential."""
        if self.metrics_token is None:
            self.check_internal(credential, method, target)
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self.metrics_token.encode()):
            raise Unauthorized("GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'")

    async def warn_while_insecure(self) -> None:
        """Log the INSECURE_NO_AUTH warning now and every minute (a background task); returns at once
        when the service has a secret."""
        while self.insecure:
            log.warning(INSECURE_WARNING, self.service)
            await asyncio.sleep(INSECURE_WARNING_INTERVAL)
