"""The JSON models that travel between services, built by the sender and parsed by the receiver.

Every internal JSON body has its model here; nothing travels as an untyped ``dict``. Times are float UNIX
seconds, sizes bytes. The leader builds :class:`VersionInfo` from its SQL rows (by column name) and the
user app parses it from the manifest; the leader builds :class:`RingView` and chunk servers and user apps
parse it into a :class:`shared.ring.Ring`.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.protocol.rules import IF_MATCH_PATTERN, TXN_ID_PATTERN

# Most copies a version may ask for (matches REPLICATION_FACTOR's bound in shared/config.py).
MAX_REPLICATION = 16


_HOST_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")  # "_": Docker service names
_URL_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)*/?$")


def check_peer_url(url: str) -> str:
    """``url`` if it is ``http(s)://host[:port][/path]`` with an ASCII host name or an IP address and
    nothing else (no user info, query, fragment or odd characters); raises ``ValueError`` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"advertise_url is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("advertise_url must be http:// or https:// with a host")
    if parts.username is not None or parts.query or parts.fragment or "\\" in url or not url.isascii():
        raise ValueError("advertise_url must have no user info, query, fragment, backslash or non-ASCII character")
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(_HOST_LABEL.match(label) for label in host.split(".")):
            raise ValueError(f"advertise_url has an invalid host name {host!r}") from None
    if port == 0 or not _URL_PATH.match(parts.path):
        raise ValueError("advertise_url has an invalid port or path")
    return url


class _Wire(BaseModel):
    """Base of the wire models: unknown fields are ignored, so a newer peer can add one."""

    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- membership


class ServerRegistration(_Wire):
    """Chunk server → leader on start (and again whenever it stops receiving health checks). ``proof``:
    the server's key proving its id when it has one (``shared/auth/server_identity.py``).
    ``advertise_url`` is ``http(s)://host[:port][/path]``: an ASCII host name or an IP address, no user
    info, query or fragment, so that every peer can call it."""

    server_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    advertise_url: str = Field(min_length=1, max_length=512)
    capacity_bytes: int = Field(ge=0, le=2**63 - 1)
    proof: str | None = Field(default=None, max_length=128)

    @field_validator("advertise_url")
    @classmethod
    def _callable_url(cls, url: str) -> str:
        return check_peer_url(url)


class RegistrationResult(_Wire):
    """Leader → chunk server after registration. ``server_key`` (hex) only when the leader issued the
    server its key, at its first registration."""

    server_id: str
    epoch: int
    health_check_interval: float
    server_key: str | None = None


class RingServer(_Wire):
    """One chunk server in ``GET /ring`` and ``GET /cluster``; ``joined_at`` is when it last joined the
    ring (UNIX seconds)."""

    server_id: str
    url: str
    state: str
    missed_checks: int = 0
    capacity_bytes: int = 0
    joined_at: float | None = None


class RingView(_Wire):
    """``GET /ring`` on the leader: the ring at one epoch plus the cluster policy.

    ``vnodes`` is ``[[position, server_id], ...]``; servers in state ``removed`` are listed in ``servers``
    for operators but own no virtual nodes (Dynamo §4.2).
    """

    epoch: int
    replication_factor: int
    chunk_size: int
    min_chunk_size: int
    max_chunk_size: int
    servers: list[RingServer]
    vnodes: list[tuple[int, str]]
    # The write quorum: copies of every chunk a write needs to succeed (user_app/writer.py).
    min_write_replicas: int = 1
    # The chunk-size policy (shared/chunk_size.py); 0 = off.
    target_chunks_per_file: int = 0
    streamed_chunk_size: int = 0


# ---------------------------------------------------------------- versions (the leader's half of 2PC)


class VersionInfo(_Wire):
    """Metadata of one file version (without its chunk list): what ``/stat`` answers and a manifest
    carries. ``state`` is ``pending``, ``committed`` or ``deleted``."""

    path: str
    version: int
    size: int
    sha256: str
    chunks: int
    chunk_size: int
    replication: int
    state: str
    created_at: float
    committed_at: float | None = None
    deleted_at: float | None = None


_INT_TEXT = re.compile(r"-?[0-9]{1,64}")


def _strict_int(value: Any) -> Any:
    """A number field's input, refused unless it is an int or (in a query string) ASCII digits only,
    which pydantic alone is not: it takes ``"1_0"``, ``"+5"``, ``" 5"``, ``"5.0"`` and ``true``
    (shared/numbers.py). A ``-`` passes, for the field's bounds to refuse as they refuse a JSON -1."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        return int(value)
    shown = value[:80] if isinstance(value, str) else type(value).__name__
    raise ValueError(f"must be a whole number in ASCII digits, got {shown!r}")


class VersionPrepare(_Wire):
    """Phase 2 of a write (reference design: "register the name mapping as pending"): the query of
    ``POST /txns`` and the JSON of each ``/txns/batch`` section. The packed chunk digests travel beside it
    as binary. ``chunk_size`` and ``replication`` default to the cluster's when absent.

    ``if_match`` (RFC 9110 §13.1.1) makes the write conditional on the path's live version at commit:
    ``"*"`` needs one, a comma-separated list of SHA-256s needs one with one of them (412 otherwise)."""

    txn_id: str = Field(pattern=TXN_ID_PATTERN)
    path: str
    size: int = Field(ge=0, le=2**63 - 1)
    sha256: str
    chunk_size: int | None = Field(default=None, gt=0, le=2**31 - 1)
    replication: int | None = Field(default=None, ge=1, le=MAX_REPLICATION)
    create_only: bool = False
    if_match: str | None = Field(default=None, pattern=IF_MATCH_PATTERN)

    _numbers = field_validator("size", "chunk_size", "replication", mode="before")(_strict_int)


class PreparedVersion(_Wire):
    """The leader's answer to phase 2: the version number the write will get once committed."""

    txn_id: str
    path: str
    version: int
    state: str = "pending"


class BatchError(_Wire):
    """A failed item of a batch answer: what its single request would have answered."""

    error: str
    status: int


# ---------------------------------------------------------------- chunk servers


class PrepareResult(_Wire):
    """Phase 1 outcome on one chunk server: ``stored`` distinct chunks newly pending for the txn (what its
    commit will count), ``already_committed`` chunks deduplicated against committed copies (and pinned)."""

    stored: int
    already_committed: int


# ---------------------------------------------------------------- namespace


class ListEntry(_Wire):
    """One entry of a folder listing."""

    name: str
    path: str
    type: str  # "file" or "dir"
    size: int
    version: int | None = None
    created_at: float | None = None


class RenameRequest(_Wire):
    src: str
    dst: str


class PathRequest(_Wire):
    """A body naming one path (``POST /undelete``)."""

    path: str


# ---------------------------------------------------------------- access keys (README "Security")

ACCESS_KEY_PATTERN = r"^[A-Za-z0-9]{16,128}$"  # generated ones are 20 characters, as S3's


class Grant(_Wire):
    """Access to every path that starts with ``prefix`` (a plain string prefix, as S3 policies and Garage
    grants have it: end a folder with ``/``). ``write`` includes ``read``."""

    prefix: str = Field(max_length=1024)
    access: Literal["read", "write"]

    @field_validator("prefix")
    @classmethod
    def _nfc(cls, prefix: str) -> str:
        """NFC, like every path (shared/paths.py), so a prefix typed in NFD still matches."""
        return unicodedata.normalize("NFC", prefix)


class NewAccessKey(_Wire):
    """``POST /admin/keys`` (user app) and ``POST /keys`` (leader): a key to create."""

    name: str = Field(min_length=1, max_length=128)
    grants: list[Grant] = Field(default_factory=list, max_length=256)
    admin: bool = False


class AccessKeyInfo(_Wire):
    """A key as ``GET /admin/keys`` lists it: everything but the secret."""

    access_key: str
    name: str
    grants: list[Grant]
    admin: bool
    created_at: float


class AccessKeySecret(AccessKeyInfo):
    """A key with its secret: answered once to the admin who creates it, and to cluster members that
    verify requests signed with it (Basic, SigV4)."""

    secret_key: str


def dump(model: BaseModel) -> dict[str, Any]:
    """``model`` as a JSON-ready dict (for a response body built around it)."""
    return model.model_dump()
