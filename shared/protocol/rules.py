"""Rules and bounds that more than one service applies, each defined once.

A bound here is checked by the side that receives (a 400 or 413 otherwise) and respected by the side that
sends, so the two can never drift apart.
"""

from __future__ import annotations

import hashlib
import re

import orjson

from shared.errors import BadRequest

# ---------------------------------------------------------------- transaction ids
# A 2PC transaction id (reference design, "Two-Phase Commit Process"): made by the user app (uuid4 hex),
# carried through all four phases. 1-64 characters of [A-Za-z0-9_-]: safe in a URL path segment, a query
# string, a one-byte-length section header and a SQL column of 64.
TXN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_TXN_ID_LENGTH = 64
_TXN_ID_RE = re.compile(TXN_ID_PATTERN)


def validate_txn_id(txn_id: object) -> str:
    """``txn_id`` if it follows the rule above; raises :class:`BadRequest` saying what is wrong."""
    if not isinstance(txn_id, str) or not _TXN_ID_RE.match(txn_id):
        shown = txn_id[:80] if isinstance(txn_id, str) else type(txn_id).__name__
        raise BadRequest(f"txn_id must be 1-64 characters of [A-Za-z0-9_-], got {shown!r}")
    return txn_id


def expected_chunks(size: int, chunk_size: int) -> int:
    """Chunks of a ``size``-byte file cut into ``chunk_size``-byte chunks (0 for an empty file): every
    chunk is ``chunk_size`` bytes but the last, which holds the rest."""
    return -(-size // chunk_size)  # integer ceil: exact for any size


def chunk_length(index: int, size: int, chunk_size: int) -> int:
    """The length in bytes chunk ``index`` of such a file must have."""
    return min(chunk_size, size - index * chunk_size)


# Largest file, bytes: 5 TiB, S3's largest object.
MAX_FILE_SIZE = 5 * 1024**4

# Largest version number: the leader's SQL column is a signed 32-bit INTEGER (two billion versions of one
# file). A ``?version=`` above it is a 400, never an overflow deep in SQL.
MAX_VERSION = 2**31 - 1


# ---------------------------------------------------------------- conditional writes (RFC 9110 §13.1.1)
# A file's ETag is its SHA-256 (64 lowercase hex characters) in quotes. A PUT's or DELETE's ``If-Match``
# travels to the leader as ``"*"`` or the SHA-256s it lists, comma-separated, at most MAX_IF_MATCH_TAGS.
SHA256_RE = re.compile(r"[0-9a-f]{64}")  # use fullmatch
MAX_IF_MATCH_TAGS = 16
IF_MATCH_PATTERN = rf"^(\*|[0-9a-f]{{64}}(,[0-9a-f]{{64}}){{0,{MAX_IF_MATCH_TAGS - 1}}})$"
_IF_MATCH_RE = re.compile(IF_MATCH_PATTERN)


def validate_if_match(value: object) -> str:
    """``value`` if it is an ``if_match`` in the form above; raises :class:`BadRequest` otherwise."""
    if not isinstance(value, str) or not _IF_MATCH_RE.fullmatch(value):
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise BadRequest(f"if_match must be '*' or 1-{MAX_IF_MATCH_TAGS} comma-separated SHA-256s, got {shown!r}")
    return value


def if_match_allows(if_match: str | None, current_sha256: str | None) -> bool:
    """Whether a write conditioned on ``if_match`` may replace a path whose live version has
    ``current_sha256`` (None: no live version). ``"*"`` asks for any live version; a list, for one of
    its SHA-256s; None is unconditional."""
    if if_match is None:
        return True
    if current_sha256 is None:
        return False
    return if_match == "*" or current_sha256 in if_match.split(",")


# ---------------------------------------------------------------- object metadata (S3)
# A version's S3 entity tag, without quotes: the MD5 of its content (32 lowercase hex) or, for a multipart
# upload, the MD5 of its parts' MD5s and the number of parts (``<32 hex>-<N>``).
ETAG_PATTERN = r"^[0-9a-f]{32}(-[1-9][0-9]{0,4})?$"
# A version's Content-Type: 1-255 characters of printable ASCII (what an HTTP field value may hold
# without encoding), stored as the writer gave it.
CONTENT_TYPE_PATTERN = r"^[\x20-\x7E]{1,255}$"
# User metadata (S3's ``x-amz-meta-*``): a JSON object of lowercase header-token names to string values.
# S3 bounds the user-defined metadata of an object at 2 KB, names and values counted in UTF-8 bytes.
MAX_USER_METADATA_BYTES = 2048
# Characters of JSON text that may carry it: even 2048 one-byte names with empty values
# (``"k":"",`` each) fit, escapes included; a longer text is refused before it is parsed.
MAX_USER_METADATA_TEXT = 16 * 1024
USER_METADATA_KEY_PATTERN = r"^[a-z0-9!#$%&'*+.^_`|~-]{1,128}$"
_USER_METADATA_KEY_RE = re.compile(USER_METADATA_KEY_PATTERN)
# Control characters a value may not hold (tab is allowed): CR and LF would split a response header.
_VALUE_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def parse_user_metadata(text: object) -> dict[str, str]:
    """The user metadata in ``text``: a JSON object whose keys match :data:`USER_METADATA_KEY_PATTERN`
    (lowercase HTTP token characters, 1-128) and whose values are strings without control characters
    other than tab, at most :data:`MAX_USER_METADATA_BYTES` bytes of keys and values in UTF-8 together.
    Raises :class:`BadRequest` saying what is wrong."""
    return _parse_string_object("user_metadata", text, MAX_USER_METADATA_TEXT, MAX_USER_METADATA_BYTES,
                                _USER_METADATA_KEY_RE.fullmatch,
                                "must be 1-128 characters of lowercase a-z, 0-9 and !#$%&'*+.^_`|~-")


# Object headers (S3): the headers other than Content-Type a GET of a version answers with, as the
# writer gave them: the standard ones S3 keeps, and the x-amz-checksum-* of the content (its value under
# the algorithm's header, and its type; an upload's algorithm too). Names lowercase.
STANDARD_OBJECT_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language", "expires")
CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
CHECKSUM_PREFIX = "x-amz-checksum-"  # every checksum entry's name starts so; they describe the bytes
CHECKSUM_TYPE_HEADER = "x-amz-checksum-type"
CHECKSUM_ALGORITHM_HEADER = "x-amz-checksum-algorithm"
OBJECT_HEADER_NAMES = frozenset([*STANDARD_OBJECT_HEADERS, *(f"x-amz-checksum-{a}" for a in CHECKSUM_ALGORITHMS),
                                 CHECKSUM_TYPE_HEADER, CHECKSUM_ALGORITHM_HEADER])
MAX_OBJECT_HEADERS_BYTES = 8192


def split_checksum(headers: dict[str, str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """``(the other entries, the checksum entries)`` of object headers: the checksum entries
    (:data:`CHECKSUM_PREFIX`) describe the bytes, the others the object."""
    other, checksum = {}, {}
    for name, value in (headers or {}).items():
        (checksum if name.startswith(CHECKSUM_PREFIX) else other)[name] = value
    return other, checksum
MAX_OBJECT_HEADERS_TEXT = 64 * 1024


def parse_object_headers(text: object) -> dict[str, str]:
    """The object headers in ``text``: a JSON object whose names are among :data:`OBJECT_HEADER_NAMES`
    and whose values are strings without control characters other than tab, at most
    :data:`MAX_OBJECT_HEADERS_BYTES` bytes of names and values in UTF-8 together. Raises
    :class:`BadRequest` saying what is wrong."""
    return _parse_string_object("object_headers", text, MAX_OBJECT_HEADERS_TEXT, MAX_OBJECT_HEADERS_BYTES,
                                OBJECT_HEADER_NAMES.__contains__,
                                "is not one of " + ", ".join(sorted(OBJECT_HEADER_NAMES)))


def _parse_string_object(field: str, text: object, max_text: int, max_bytes: int, name_ok, name_rule: str
                         ) -> dict[str, str]:
    """``text`` as a JSON object of strings (see :func:`parse_user_metadata`), each name passing
    ``name_ok`` (``name_rule`` says how it fails). Raises :class:`BadRequest`."""
    if not isinstance(text, str):
        raise BadRequest(f"{field} must be JSON text, got {type(text).__name__}")
    if len(text) > max_text:
        raise BadRequest(f"{field} is longer than {max_text} characters of JSON")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{field} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"{field} must be a JSON object of strings, got a JSON {type(doc).__name__}")
    total = 0
    for key, value in doc.items():
        if not name_ok(key):
            raise BadRequest(f"{field} name {key[:80]!r} {name_rule}")
        if not isinstance(value, str):
            raise BadRequest(f"{field} value of {key!r} must be a string, got a JSON {type(value).__name__}")
        if _VALUE_CONTROL_RE.search(value):
            raise BadRequest(f"{field} value of {key!r} contains a control character")
        try:
            total += len(key) + len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise BadRequest(f"{field} value of {key!r} is not valid UTF-8") from None
    if total > max_bytes:
        raise BadRequest(f"{field} holds {total} bytes of names and values, more than the {max_bytes} allowed")
    return doc


def canonical_user_metadata(metadata: dict[str, str]) -> str:
    """The JSON text a version stores for ``metadata`` (validated; object headers too): compact, names
    sorted."""
    return orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS).decode()


# ---------------------------------------------------------------- multipart uploads (S3)
# An upload id: made by the leader (``leader/multipart.py``), 1-64 characters of [A-Za-z0-9_-] like a
# transaction id, so it is safe in a URL path segment, a query string and a SQL column of 64.
UPLOAD_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
UPLOAD_ID_RE = re.compile(UPLOAD_ID_PATTERN)
# Part numbers S3 allows (UploadPart's ``partNumber``): 1 to 10,000.
MAX_PART_NUMBER = 10_000
# A part's S3 entity tag: the MD5 of its content, 32 lowercase hex (the multipart ETag is computed from
# the parts' binary MD5s, so a part cannot carry a ``-<N>`` tag).
PART_ETAG_PATTERN = r"^[0-9a-f]{32}$"


def multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of a multipart object: the MD5 of its parts' binary MD5s (each ``PART_ETAG_PATTERN``),
    then ``-<number of parts>``. Raises :class:`ValueError` for a part ETag that is not hex."""
    joined = b"".join(bytes.fromhex(tag) for tag in part_etags)
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(part_etags)}"


# ---------------------------------------------------------------- ordered key scans (S3 listings)
# Results one ``GET /scan`` answers at most (and by default): S3's MaxKeys bound.
MAX_SCAN_LIMIT = 1000
# Bytes of UTF-8 a scan's delimiter may have; S3 clients send "/".
MAX_DELIMITER_BYTES = 16


# ---------------------------------------------------------------- batch bounds
# Transactions in one batch request: leader ``/txns/batch`` and ``/txns/batch-commit``, chunk server
# ``/chunks/commit`` and ``/chunks/abort`` from a user app. Bounded so one request stays small (a 512-txn
# commit is ~20 KB of JSON) and one slow batch cannot grow without end.
MAX_TXNS_PER_BATCH = 512
# What a chunk server accepts in one commit / abort body (anti-entropy, operators, old clients send more
# than a user app's coalescer does).
MAX_TXNS_PER_REQUEST = 10_000
# Txn sections in one ``/chunks/prepare-many`` body (the user app sends at most MAX_PREPARE_SECTIONS).
MAX_SECTIONS_ACCEPTED = 4096
MAX_PREPARE_SECTIONS = 64
# Bytes of chunk frames a user app puts in one prepare request: 8 MiB, a few pieces' worth.
MAX_PREPARE_REQUEST_BYTES = 8 * 1024 * 1024
# Files in one ``/batch/write``, paths in one ``/batch/read`` or leader ``/manifests``.
MAX_BATCH_FILES = 1024
# Chunks one ``POST /manifests`` answer may list in all (2 MiB of digests): a small request naming a huge
# file a thousand times, or a thousand large files, cannot make the leader load or send more.
MAX_MANIFEST_CHUNKS = 65536
# Digests in one ``/chunks/read`` / ``/chunks/exists`` / ``/chunks/verify`` request: 64 MiB of 1 KiB chunks
# in one answer.
MAX_DIGESTS_PER_REQUEST = 65536

# ---------------------------------------------------------------- headers
# The leader puts the ring epoch on every response, so user apps notice a stale cached ring.
RING_EPOCH_HEADER = "X-Ring-Epoch"
# Read leases (leader/read_leases.py, user_app/manifest_leases.py): the holder a manifest lookup names,
# the seconds the answer grants, where the leader revokes them, and the longest lease a user app accepts.
LEASE_HOLDER_HEADER = "X-RingFS-Lease-Holder"
LEASE_HEADER = "X-RingFS-Lease"
LEASE_REVOKE_PATH = "/internal/leases/revoke"
MAX_LEASE_SECONDS = 60.0
# A lease holder's callback: http(s)://host[:port] and an optional path prefix (a user app's ADVERTISE_URL).
LEASE_CALLBACK_RE = re.compile(r"^https?://[A-Za-z0-9._\-\[\]:]{1,255}(/[A-Za-z0-9._~%/-]{0,255})?$")
# The leader sends this with its health checks, so a chunk server knows it is still watched.
HEALTH_CHECK_HEADER = "X-RingFS-Health-Check"
OCTET_STREAM = "application/octet-stream"
JSON = "application/json"
