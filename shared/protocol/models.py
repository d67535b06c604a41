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

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from shared.protocol.rules import (
    CONTENT_TYPE_PATTERN, ETAG_PATTERN, IF_MATCH_PATTERN, MAX_OBJECT_HEADERS_TEXT, MAX_PART_NUMBER,
    MAX_USER_METADATA_TEXT, MAX_VERSION, SHA256_RE, TXN_ID_PATTERN, UPLOAD_ID_PATTERN,
)

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
    carries. ``state`` is ``pending``, ``committed`` or ``deleted``, or ``part`` for a part of a
    multipart upload (its commit answer, whose ``path`` is the part's own, ``leader/parts.py``).

    The object metadata the writer gave (S3): ``etag`` (the entity tag without quotes: 32 lowercase hex
    of the content's MD5, or ``<32 hex>-<N>`` for a multipart upload), ``content_type`` and
    ``user_metadata`` (the ``x-amz-meta-*`` pairs, names lowercase) and ``object_headers`` (the other
    headers a GET answers with: Cache-Control, ..., the ``x-amz-checksum-*`` of the content; names
    lowercase, ``shared.protocol.rules.OBJECT_HEADER_NAMES``); None when the writer gave none, as for
    every version written before they existed."""

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
    etag: str | None = None
    content_type: str | None = None
    user_metadata: dict[str, str] | None = None
    object_headers: dict[str, str] | None = None


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
    ``"*"`` needs one, a comma-separated list of SHA-256s needs one with one of them (412 otherwise).

    Object metadata, stored with the version and answered in its :class:`VersionInfo`: ``etag``
    (``shared.protocol.rules.ETAG_PATTERN``), ``content_type`` (1-255 printable ASCII characters) and
    ``user_metadata`` and ``object_headers``, JSON texts of objects of strings that the leader checks
    (``shared.protocol.rules.parse_user_metadata`` / ``parse_object_headers``: 400 saying what is wrong).

    ``upload_id`` and ``part_number`` (1 to ``MAX_PART_NUMBER``), both or neither, make the write part
    ``part_number`` of that multipart upload instead of a version of ``path``: ``path`` must then be the
    upload's path, the part is recorded apart from the namespace (``leader/parts.py``) and needs an
    ``etag`` (its MD5, ``rules.PART_ETAG_PATTERN``), and it cannot be ``create_only`` or ``if_match``
    (400)."""

    txn_id: str = Field(pattern=TXN_ID_PATTERN)
    path: str
    size: int = Field(ge=0, le=2**63 - 1)
    sha256: str
    chunk_size: int | None = Field(default=None, gt=0, le=2**31 - 1)
    replication: int | None = Field(default=None, ge=1, le=MAX_REPLICATION)
    create_only: bool = False
    if_match: str | None = Field(default=None, pattern=IF_MATCH_PATTERN)
    etag: str | None = Field(default=None, pattern=ETAG_PATTERN)
    content_type: str | None = Field(default=None, pattern=CONTENT_TYPE_PATTERN)
    user_metadata: str | None = Field(default=None, max_length=MAX_USER_METADATA_TEXT)
    object_headers: str | None = Field(default=None, max_length=MAX_OBJECT_HEADERS_TEXT)
    upload_id: str | None = Field(default=None, pattern=UPLOAD_ID_PATTERN)
    part_number: int | None = Field(default=None, ge=1, le=MAX_PART_NUMBER)

    _numbers = field_validator("size", "chunk_size", "replication", "part_number", mode="before")(_strict_int)

    @model_validator(mode="after")
    def _part_fields_together(self) -> "VersionPrepare":
        if (self.upload_id is None) != (self.part_number is None):
            raise ValueError("upload_id and part_number go together: both for a part of a multipart upload, "
                             "neither for a version")
        return self


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
    """One entry of a folder listing: a file's latest version (its ``version``, ``sha256`` and times,
    UNIX seconds; ``versions``: how many committed versions it has), or a folder (``size``: the bytes of
    the live files below it)."""

    name: str
    path: str
    type: str  # "file" or "dir"
    size: int
    version: int | None = None
    created_at: float | None = None
    committed_at: float | None = None
    sha256: str | None = None
    versions: int | None = None


class RenameRequest(_Wire):
    src: str
    dst: str


class PathRequest(_Wire):
    """A body naming one path (``POST /undelete``, ``POST /folders``)."""

    path: str


class UndeleteRequest(PathRequest):
    """``POST /undelete``: restore the versions one delete of ``path`` moved to the trash, the one at
    ``deleted_at`` (UNIX seconds, exactly as a listing gave it; S3's delete marker of the path), or the
    most recent one when None."""

    deleted_at: float | None = None


class CopyRequest(_Wire):
    """``POST /copy`` on the leader (S3 CopyObject): a new version of ``dst`` sharing the chunks of ``src``
    (its latest committed version, or ``src_version``). ``create_only`` and ``if_match`` condition it as
    they condition a write of ``dst``. ``metadata``: ``"copy"`` keeps the source's ``content_type``,
    ``user_metadata`` and ``object_headers`` (the fields here are then ignored), ``"replace"`` stores the
    ones given here (None: none). ``user_metadata`` and ``object_headers`` are JSON text as in
    :class:`VersionPrepare`."""

    src: str
    src_version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    dst: str
    create_only: bool = False
    if_match: str | None = Field(default=None, pattern=IF_MATCH_PATTERN)
    metadata: Literal["copy", "replace"] = "copy"
    content_type: str | None = Field(default=None, pattern=CONTENT_TYPE_PATTERN)
    user_metadata: str | None = Field(default=None, max_length=MAX_USER_METADATA_TEXT)
    object_headers: str | None = Field(default=None, max_length=MAX_OBJECT_HEADERS_TEXT)

    _numbers = field_validator("src_version", mode="before")(_strict_int)


# ---------------------------------------------------------------- multipart uploads (S3; leader/multipart.py)


class NewUpload(_Wire):
    """``POST /multipart`` on the leader (S3 CreateMultipartUpload): an upload that will make a version of
    ``path``, with the ``content_type``, ``user_metadata`` and ``object_headers`` (JSON text, as in
    :class:`VersionPrepare`) that version will get; ``object_headers`` may also name the checksum
    algorithm and type the client chose (``x-amz-checksum-algorithm``, ``x-amz-checksum-type``)."""

    path: str
    content_type: str | None = Field(default=None, pattern=CONTENT_TYPE_PATTERN)
    user_metadata: str | None = Field(default=None, max_length=MAX_USER_METADATA_TEXT)
    object_headers: str | None = Field(default=None, max_length=MAX_OBJECT_HEADERS_TEXT)


class UploadSummary(_Wire):
    """An upload as ``POST /multipart`` answers it and ``GET /multipart`` lists it: its id, the path it
    will write (normalized) and when it was created (UNIX seconds)."""

    upload_id: str
    path: str
    created_at: float


class UploadInfo(UploadSummary):
    """``GET /multipart/{upload_id}``: the upload with the object metadata its version will get
    (``user_metadata`` and ``object_headers`` parsed, as in :class:`VersionInfo`)."""

    content_type: str | None = None
    user_metadata: dict[str, str] | None = None
    object_headers: dict[str, str] | None = None


class UploadListing(_Wire):
    """``GET /multipart``: uploads in ``(path, created_at, upload_id)`` order; ``truncated``: more follow."""

    uploads: list[UploadSummary]
    truncated: bool


class PartInfo(_Wire):
    """One part of ``GET /multipart/{upload_id}/parts``: its latest upload's size (bytes), S3 ETag (the
    MD5 of its content) and commit time (UNIX seconds)."""

    part_number: int
    size: int
    etag: str
    committed_at: float


class PartListing(_Wire):
    """``GET /multipart/{upload_id}/parts``: parts in ascending number; ``truncated``: more follow."""

    parts: list[PartInfo]
    truncated: bool


# An ETag a client names for a part may be longer than any S3 ETag (it then matches nothing) up to this
# many characters; longer is a malformed request.
MAX_REQUESTED_ETAG = 1024


class AssembleRequest(_Wire):
    """``POST /multipart/{upload_id}/assemble``: the parts to join, in the client's order, each
    ``[part_number, etag]`` (the ETag without quotes), 1 to ``MAX_PART_NUMBER`` of them. A number outside
    1..``MAX_PART_NUMBER`` is no part that exists (``InvalidPart``), not a malformed request."""

    parts: list[tuple[StrictInt, StrictStr]] = Field(min_length=1, max_length=MAX_PART_NUMBER)

    @field_validator("parts")
    @classmethod
    def _bounded_etags(cls, parts: list[tuple[int, str]]) -> list[tuple[int, str]]:
        if any(len(etag) > MAX_REQUESTED_ETAG for _, etag in parts):
            raise ValueError(f"a part's etag is longer than {MAX_REQUESTED_ETAG} characters")
        return parts


class CompleteRequest(AssembleRequest):
    """``POST /multipart/{upload_id}/complete``: the parts as in :class:`AssembleRequest`, the SHA-256 of
    the whole object's content (64 lowercase hex; the user app reads the parts once to compute it),
    ``digests_sha256`` as the assemble answered it (the parts must not have changed since), the
    conditions of a write of the upload's path (``create_only``, ``if_match``), and the version's
    ``object_headers`` (JSON text as in :class:`VersionPrepare`: the upload's with the object's checksum;
    None: the upload's)."""

    sha256: str
    digests_sha256: str
    create_only: bool = False
    if_match: str | None = Field(default=None, pattern=IF_MATCH_PATTERN)
    object_headers: str | None = Field(default=None, max_length=MAX_OBJECT_HEADERS_TEXT)

    @field_validator("sha256", "digests_sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not SHA256_RE.fullmatch(value):
            raise ValueError(f"must be 64 lowercase hex characters, got {value[:80]!r}")
        return value


class UploadProblem(_Wire):
    """Why a CompleteMultipartUpload is not valid, as S3 names it: ``code`` (``InvalidPart``,
    ``InvalidPartOrder``, ``EntityTooSmall``, ``EntityTooLarge``) and a ``message``."""

    code: str
    message: str


class PlannedPart(_Wire):
    """One part of an :class:`AssemblyPlan`: its size and chunk size (bytes), ETag, its chunks' packed
    32-byte digests in base64, and its ``object_headers`` (the checksum it was uploaded with) or None."""

    part_number: int
    size: int
    chunk_size: int
    etag: str
    digests: str
    object_headers: dict[str, str] | None = None


class AssemblyPlan(_Wire):
    """``POST /multipart/{upload_id}/assemble`` of a valid request (``problem`` None): the object's
    ``size`` (bytes), the parts' ``chunk_size`` (the first part's) and ``replication`` (the fewest),
    ``aligned`` (every part has that chunk size and every part but the last is a whole number of chunks:
    the parts' chunk lists joined are the object's), the S3 multipart ``etag`` (``<md5 of the parts'
    MD5s>-<parts>``), ``digests_sha256`` (SHA-256 hex of all the parts' packed digests, in order) and the
    ``parts``. An invalid request is answered ``{"problem": UploadProblem}`` alone."""

    problem: UploadProblem | None = None
    size: int
    chunk_size: int
    replication: int
    aligned: bool
    etag: str
    digests_sha256: str
    parts: list[PlannedPart]


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


# ---------------------------------------------------------------- WebDAV dead properties (leader/dav_properties.py)


class PropertiesQuery(_Wire):
    """``POST /properties/get``: the properties of ``paths`` (at most 1024) and of every path directly in
    folder ``children_of``."""

    paths: list[str] = Field(default_factory=list, max_length=1024)
    children_of: str | None = None


class PropertiesPatch(_Wire):
    """``POST /properties/patch``: set (name in Clark notation → XML value) and remove properties of
    ``path`` at once."""

    path: str
    set: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class PropertiesRemoval(_Wire):
    """``POST /properties/remove``: every property of ``path`` (and with ``below``, of what is below it)."""

    path: str
    below: bool = False


class PropertiesMove(_Wire):
    """``POST /properties/move``: ``dst`` gets ``src``'s properties (``below``: with what is below them);
    ``keep_source`` copies instead of moving."""

    src: str
    dst: str
    keep_source: bool = False
    below: bool = False
