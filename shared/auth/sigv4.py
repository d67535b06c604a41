"""Server-side AWS Signature Version 4 verification for the S3-compatible API (sans-IO).

Plain data in (a :class:`SigV4Request`: method, raw path, raw query, headers), a
:class:`VerifiedRequest` or a :class:`SigV4Error` out; no web framework is imported here. Standard
library only (``hmac``, ``hashlib``). It follows the AWS S3 API reference:

* "Authenticating Requests: Using the Authorization Header (AWS Signature Version 4)" — the
  ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` form;
* "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)" — presigned URLs
  (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``,
  ``X-Amz-SignedHeaders``, ``X-Amz-Signature``);
* "Signature Calculations for the Authorization Header: Transferring Payload in Multiple Chunks
  (Chunked Upload)" — the seed signature and signing key that :mod:`shared.auth.aws_chunked` needs to
  check every chunk of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` body.

Usage (synchronous key lookup)::

    verified = verify(SigV4Request(method, raw_path, raw_query, headers), lookup_secret, "us-east-1")

or in two steps when the secret lookup is asynchronous::

    parsed = parse_request(request, region)          # no secret needed; raises SigV4Error
    secret = await keys.secret_for(parsed.access_key_id)
    verified = verify_parsed(parsed, secret)          # InvalidAccessKeyId when secret is None

What is checked, in this order: exactly one auth mechanism; its syntax; ``X-Amz-Security-Token``
(rejected: RingFS has no temporary credentials, ``InvalidToken``); the credential scope (region equals
the configured one, service ``s3``, terminal ``aws4_request``, date equals the date of
``X-Amz-Date``); ``host`` and every ``x-amz-*`` header present are signed; the access key is known;
the clock (header auth: within 15 minutes, ``RequestTimeTooSkewed``; presigned: not expired,
``AccessDenied`` "Request has expired", and not dated more than 15 minutes ahead); the signature
(HMAC-SHA256 with the derived key, compared with :func:`hmac.compare_digest`).

Canonical request as S3 builds it: the path is *not* normalised and *not* double-encoded. The raw
path as received (already percent-encoded) is percent-decoded to bytes and re-encoded with the SigV4
rule (every byte except ``A-Z a-z 0-9 - _ . ~`` and ``/`` as ``%XX``, upper-case hex): that is exactly
what botocore sends and signs. Query parameters likewise are decoded and re-encoded (``+`` stays a
literal plus, ``%2B``), sorted by encoded name then value. If the signature does not match that
canonical form, the form a client would get by signing the raw path and raw query *as sent* (botocore's
own algorithm for a pre-encoded URL) is tried too; both cover exactly the bytes the client sent, so
accepting either is sound.

Secrets are never logged nor put in an error; every comparison of a signature or digest is constant
time.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINAL = "aws4_request"
# "Authenticating Requests: Using the Authorization Header": S3 refuses a request whose time differs
# from the server's by more than 15 minutes.
MAX_SKEW_SECONDS = 15 * 60
# "Authenticating Requests: Using Query Parameters": X-Amz-Expires is 1 .. 604800 seconds (7 days).
MAX_PRESIGN_EXPIRES = 604800

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

# VerifiedRequest.payload_mode values: what the body is and how the caller must check it.
PAYLOAD_SHA256 = "sha256"  # plain body; its SHA-256 must equal content_sha256 (ContentSha256Verifier)
PAYLOAD_UNSIGNED = "unsigned"  # plain body, not covered by the signature
PAYLOAD_STREAMING = "streaming"  # aws-chunked, every chunk signed
PAYLOAD_STREAMING_TRAILER = "streaming-trailer"  # aws-chunked, chunks and trailer signed
PAYLOAD_STREAMING_UNSIGNED_TRAILER = "streaming-unsigned-trailer"  # aws-chunked, unsigned, trailer
STREAMING_MODES = frozenset({PAYLOAD_STREAMING, PAYLOAD_STREAMING_TRAILER,
                             PAYLOAD_STREAMING_UNSIGNED_TRAILER})
_CONTENT_SHA256_MODES = {
    UNSIGNED_PAYLOAD: PAYLOAD_UNSIGNED,
    STREAMING_PAYLOAD: PAYLOAD_STREAMING,
    STREAMING_PAYLOAD_TRAILER: PAYLOAD_STREAMING_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER: PAYLOAD_STREAMING_UNSIGNED_TRAILER,
}

AUTH_HEADER = "header"
AUTH_QUERY = "query"

_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
_SCOPE_DATE_RE = re.compile(r"[0-9]{8}")
_DIGITS_RE = re.compile(r"[0-9]{1,18}")
_QUERY_AUTH_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                      "X-Amz-SignedHeaders", "X-Amz-Signature")
_QUERY_MARKERS = frozenset({b"X-Amz-Algorithm", b"X-Amz-Credential", b"X-Amz-Signature"})


class SigV4Error(Exception):
    """A request S3 would refuse, with the S3 error ``code``, a ``message`` and the HTTP ``status``.

    ``extra`` holds the additional elements AWS puts in its XML error body (for example ``Region``,
    ``RequestTime``/``ServerTime``/``MaxAllowedSkewMilliseconds``, ``HeadersNotSigned``,
    ``StringToSign``/``CanonicalRequest``), never a secret. Codes used here and in
    :mod:`shared.auth.aws_chunked`/:mod:`shared.auth.checksums`: ``SignatureDoesNotMatch`` (403),
    ``InvalidAccessKeyId`` (403), ``AccessDenied`` (403), ``RequestTimeTooSkewed`` (403),
    ``AuthorizationHeaderMalformed`` (400), ``AuthorizationQueryParametersError`` (400),
    ``InvalidArgument`` (400), ``InvalidRequest`` (400), ``InvalidToken`` (400),
    ``XAmzContentSHA256Mismatch`` (400), ``InvalidDigest`` (400), ``BadDigest`` (400),
    ``IncompleteBody`` (400), ``MalformedTrailerError`` (400).
    """

    def __init__(self, code: str, message: str, status: int, extra: Mapping[str, str] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.extra: dict[str, str] = dict(extra or {})


def _malformed_header(detail: str, **extra: str) -> SigV4Error:
    return SigV4Error("AuthorizationHeaderMalformed",
                      f"The authorization header is malformed; {detail}", 400, extra)


def _query_error(message: str, **extra: str) -> SigV4Error:
    return SigV4Error("AuthorizationQueryParametersError", message, 400, extra)


def _access_denied(message: str, **extra: str) -> SigV4Error:
    return SigV4Error("AccessDenied", message, 403, extra)


# ---------------------------------------------------------------------------------------------------
# Request data


def _latin1(value: str | bytes) -> str:
    # The request target (path, query) as sent: percent-encoded ASCII; any other byte stays one character.
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value


def _text(value: str | bytes) -> str:
    # Header bytes as text that encodes back to exactly those bytes: UTF-8 where they are UTF-8 (what
    # botocore sends and signs for an x-amz-meta-* value with an "é"), any other byte kept as a lone
    # surrogate (surrogateescape). The canonical request is hashed the same way (string_to_sign).
    return value.decode("utf-8", "surrogateescape") if isinstance(value, (bytes, bytearray)) else value


def normalize_headers(headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]
                      ) -> dict[str, list[str]]:
    """Lower-cased header name -> its values in the order received.

    ``headers`` is a mapping, or an iterable of ``(name, value)`` pairs (``str`` or ``bytes``; bytes
    are decoded as UTF-8, other bytes kept as surrogates, e.g. Starlette's ``request.headers.raw``). Repeated names keep every
    value; a mapping that can hold repeats (``multi_items()``/``items()``) should be passed as pairs.
    A mapping of name -> list of values (this function's own result) is accepted as well.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, list[str]] = {}
    for name, value in items:
        values = out.setdefault(_text(name).strip().lower(), [])
        if isinstance(value, (list, tuple)):  # already normalised
            values.extend(_text(v) for v in value)
        else:
            values.append(_text(value))
    return out


@dataclass(frozen=True)
class SigV4Request:
    """One HTTP request as received.

    * ``method``: the HTTP method (``"PUT"``).
    * ``raw_path``: the path exactly as on the request line, still percent-encoded, without the query
      (ASGI ``scope["raw_path"]``; ``bytes`` are decoded as ISO-8859-1). Empty means ``/``.
    * ``raw_query``: the query string exactly as sent, without the ``?`` (ASGI
      ``scope["query_string"]``), ``""`` when none.
    * ``headers``: a mapping or ``(name, value)`` pairs; see :func:`normalize_headers`. HTTP/2's
      ``:authority`` is not read: pass it as ``host``.
    """

    method: str
    raw_path: str | bytes
    raw_query: str | bytes
    headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]


@dataclass(frozen=True)
class ParsedAuth:
    """A request's SigV4 credential, syntax and scope checked, signature not yet verified.

    Made by :func:`parse_request`; hand it with the secret of ``access_key_id`` to
    :func:`verify_parsed`. ``request_time`` is Unix seconds (the signed ``X-Amz-Date``/``Date``),
    ``expires`` the presigned URL's ``X-Amz-Expires`` in seconds (``None`` for header auth).
    """

    auth_type: str
    access_key_id: str
    region: str
    amz_date: str
    scope: str
    request_time: float
    signed_headers: tuple[str, ...]
    signature: str
    content_sha256: str
    payload_mode: str
    expires: int | None
    canonical_requests: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose signature matched.

    * ``access_key_id``: whose key signed it.
    * ``auth_type``: ``"header"`` or ``"query"`` (presigned URL).
    * ``payload_mode``: one of ``PAYLOAD_*`` — ``"sha256"`` (check the body with
      :meth:`payload_verifier`), ``"unsigned"``, or an aws-chunked mode (decode the body with
      :class:`shared.auth.aws_chunked.AwsChunkedDecoder`).
    * ``content_sha256``: the ``x-amz-content-sha256`` value that was signed (lower-case hex, or the
      ``UNSIGNED-PAYLOAD``/``STREAMING-*`` constant).
    * ``amz_date`` (``YYYYMMDDTHHMMSSZ``), ``scope`` (``date/region/s3/aws4_request``),
      ``signature`` (64 hex; the seed signature of a chunked upload) and ``signing_key`` (the derived
      kSigning, 32 bytes; secret material, kept out of ``repr``): what the chunk decoder needs.
    * ``request_time``: Unix seconds; ``expires_at``: Unix seconds a presigned URL stops working.
    """

    access_key_id: str
    auth_type: str
    payload_mode: str
    content_sha256: str
    amz_date: str
    scope: str
    region: str
    signed_headers: tuple[str, ...]
    signature: str
    signing_key: bytes = field(repr=False)
    request_time: float
    expires_at: float | None = None

    @property
    def is_streaming(self) -> bool:
        """Whether the body is aws-chunked framed (decide by this, not by ``Content-Encoding``)."""
        return self.payload_mode in STREAMING_MODES

    def payload_verifier(self) -> ContentSha256Verifier | None:
        """A :class:`ContentSha256Verifier` for a ``"sha256"`` payload, else ``None``."""
        if self.payload_mode != PAYLOAD_SHA256:
            return None
        return ContentSha256Verifier(self.content_sha256)


# ---------------------------------------------------------------------------------------------------
# Signing keys


def derive_signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").

    ``date`` is ``YYYYMMDD``. Returns 32 bytes.
    """
    k = hmac.new(("AWS4" + secret).encode("utf-8"), date.encode("ascii"), hashlib.sha256).digest()
    k = hmac.new(k, region.encode("utf-8"), hashlib.sha256).digest()
    k = hmac.new(k, service.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(k, TERMINAL.encode("ascii"), hashlib.sha256).digest()


class SigningKeyCache:
    """Derived signing keys by (secret, date, region, service), least recently used first out.

    The secret is held only as its SHA-256 in the cache key. Thread-safe; ``maxsize`` entries.
    """

    def __init__(self, maxsize: int = 256):
        self._maxsize = maxsize
        self._keys: OrderedDict[tuple[bytes, str, str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
        ck = (hashlib.sha256(secret.encode("utf-8")).digest(), date, region, service)
        with self._lock:
            key = self._keys.get(ck)
            if key is not None:
                self._keys.move_to_end(ck)
                return key
        key = derive_signing_key(secret, date, region, service)
        with self._lock:
            self._keys[ck] = key
            while len(self._keys) > self._maxsize:
                self._keys.popitem(last=False)
        return key

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


_KEY_CACHE = SigningKeyCache()


def hmac_hex(key: bytes, message: str) -> str:
    """Hex HMAC-SHA256 of ``message`` (UTF-8) under ``key``."""
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def signatures_equal(expected: str, provided: str) -> bool:
    """Constant-time comparison of two hex signatures (case-insensitive for ``provided``)."""
    return hmac.compare_digest(expected.encode("ascii"),
                               provided.lower().encode("utf-8", "surrogateescape"))


# ---------------------------------------------------------------------------------------------------
# Canonical request


def _uri_encode(raw: bytes, safe: bytes) -> str:
    # urllib's quote never encodes A-Z a-z 0-9 "_.-~": exactly SigV4's unreserved set.
    return quote(raw, safe=safe)


def canonical_uri(raw_path: str) -> str:
    """The S3 canonical URI of a raw (percent-encoded) path: decoded, then each byte outside
    ``A-Za-z0-9-_.~/`` percent-encoded once. No ``.``/``..``/``//`` normalisation (S3 does none)."""
    if not raw_path:
        return "/"
    return _uri_encode(unquote_to_bytes(raw_path), b"/")


def split_query(raw_query: str) -> list[tuple[bytes, bytes, str, str]]:
    """``(decoded name, decoded value, raw name, raw value)`` for each ``&``-separated pair of a raw
    query string; empty pairs are dropped. ``+`` is a literal plus, not a space (as SigV4 encodes)."""
    out = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out.append((unquote_to_bytes(name), unquote_to_bytes(value), name, value))
    return out


def canonical_query(pairs: Iterable[tuple[bytes, bytes]]) -> str:
    """``name=value`` pairs URI-encoded (``/`` too), sorted by encoded name then value, ``&``-joined."""
    encoded = sorted((_uri_encode(n, b""), _uri_encode(v, b"")) for n, v in pairs)
    return "&".join(f"{n}={v}" for n, v in encoded)


def _raw_query_form(raw_query: str, skip_signature: bool) -> str:
    # botocore's _canonical_query_string_url: the pairs as they are in the URL, sorted.
    pairs = []
    for part in raw_query.split("&") if raw_query else ():
        name, _, value = part.partition("=")
        if skip_signature and unquote_to_bytes(name) == b"X-Amz-Signature":
            continue
        pairs.append((name, value))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def _trim(value: str) -> str:
    # "Trimall": strip, collapse inner runs of white space to one space (as botocore's signer).
    return " ".join(value.split())


def canonical_headers(headers: Mapping[str, list[str]], signed: Iterable[str]) -> str:
    """``name:value\\n`` for each signed header in the order listed; repeated values ``,``-joined.
    A signed header that is absent contributes an empty value (so the signature will not match)."""
    return "".join(f"{n}:{','.join(_trim(v) for v in headers.get(n, ()))}\n" for n in signed)


def build_canonical_request(method: str, uri: str, query: str, headers: Mapping[str, list[str]],
                            signed_headers: Iterable[str], payload_hash: str) -> str:
    """The SigV4 canonical request: method, URI, query, headers, signed header list, payload hash."""
    signed = list(signed_headers)
    return "\n".join([method.upper(), uri, query, canonical_headers(headers, signed),
                      ";".join(signed), payload_hash])


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    """``AWS4-HMAC-SHA256\\n<amz date>\\n<scope>\\n<hex SHA-256 of the canonical request>``."""
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


# ---------------------------------------------------------------------------------------------------
# Parsing


def _parse_amz_date(value: str) -> float | None:
    if not _AMZ_DATE_RE.fullmatch(value):
        return None
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


def _format_amz_date(ts: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts))


def _single(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise SigV4Error("InvalidArgument", f"Multiple {name} headers are not allowed.", 400,
                         {"ArgumentName": name})
    return values[0].strip()


def _check_scope(credential: str, amz_date: str, region: str, query: bool
                 ) -> tuple[str, str]:
    """(access key id, scope) of a ``AKID/date/region/service/aws4_request`` credential."""
    def fail(detail: str, **extra: str) -> SigV4Error:
        if query:
            return _query_error(f"Error parsing the X-Amz-Credential parameter; {detail}", **extra)
        return _malformed_header(detail, **extra)

    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not parts[0] or any(" " in p for p in parts):
        raise fail('the Credential is mal-formed; expecting '
                   '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    akid, date, cred_region, service, terminal = parts
    if not _SCOPE_DATE_RE.fullmatch(date):
        raise fail(f'incorrect date format "{date}". This date in the credential must be in the '
                   'format "yyyyMMdd".')
    if cred_region != region:
        raise fail(f"the region '{cred_region}' is wrong; expecting '{region}'", Region=region)
    if service != SERVICE:
        raise fail(f'incorrect service "{service}". This endpoint belongs to "{SERVICE}".')
    if terminal != TERMINAL:
        raise fail(f'incorrect terminal "{terminal}". This endpoint uses "{TERMINAL}".')
    if date != amz_date[:8]:
        message = (f'Invalid credential date "{date}". This date is not the same as X-Amz-Date: '
                   f'"{amz_date[:8]}".')
        raise _query_error(message) if query else _malformed_header(message)
    return akid, f"{date}/{region}/{SERVICE}/{TERMINAL}"


def _parse_signed_headers(value: str, fail: Callable[[str], SigV4Error]) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not value or any(not n or n != n.strip().lower() for n in names) or len(set(names)) != len(names):
        raise fail(f'invalid SignedHeaders "{value}"')
    return names


def _check_signed(headers: Mapping[str, list[str]], signed: tuple[str, ...],
                  required: Iterable[str]) -> None:
    signed_set = set(signed)
    missing = sorted({n for n in headers if n.startswith("x-amz-")} - signed_set
                     | {n for n in required if n not in signed_set})
    if missing:
        raise _access_denied("There were headers present in the request which were not signed",
                             HeadersNotSigned=", ".join(missing))


def _payload_mode(content_sha256: str) -> tuple[str, str]:
    mode = _CONTENT_SHA256_MODES.get(content_sha256)
    if mode is not None:
        return content_sha256, mode
    if _HEX64_RE.fullmatch(content_sha256):
        return content_sha256.lower(), PAYLOAD_SHA256
    raise SigV4Error(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid "
        "sha256 value.", 400, {"ArgumentName": "x-amz-content-sha256",
                               "ArgumentValue": content_sha256[:100]})


def auth_type(request: SigV4Request) -> str | None:
    """``"header"`` (an ``Authorization`` header), ``"query"`` (an ``X-Amz-Algorithm``,
    ``X-Amz-Credential`` or ``X-Amz-Signature`` parameter) or ``None`` (anonymous)."""
    if normalize_headers(request.headers).get("authorization"):
        return AUTH_HEADER
    query = _latin1(request.raw_query)
    names = {n for n, _, _, _ in split_query(query)} if query else set()
    return AUTH_QUERY if names & _QUERY_MARKERS else None


def parse_request(request: SigV4Request, region: str) -> ParsedAuth:
    """Parse and check a request's SigV4 credential without its secret.

    ``region`` is the region this endpoint serves (the credential scope must name it). Raises
    :class:`SigV4Error`: ``AccessDenied`` (no credential at all, or an ``x-amz-*``/``host`` header not
    signed, or no valid date), ``InvalidArgument`` (both auth forms, or a bad ``x-amz-content-sha256``),
    ``InvalidRequest`` (an unsupported scheme, or ``x-amz-content-sha256`` missing),
    ``InvalidToken`` (an ``X-Amz-Security-Token``: not supported), ``AuthorizationHeaderMalformed`` /
    ``AuthorizationQueryParametersError`` (syntax or scope: wrong region, service, terminal, date).
    """
    headers = normalize_headers(request.headers)
    raw_path = _latin1(request.raw_path)
    raw_query = _latin1(request.raw_query)
    pairs = split_query(raw_query) if raw_query else []
    query_names = [n for n, _, _, _ in pairs]
    auth_values = headers.get("authorization", [])
    has_query = bool(_QUERY_MARKERS.intersection(query_names))
    if auth_values and has_query:
        raise SigV4Error(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
            "query string parameter or the Authorization header should be specified", 400,
            {"ArgumentName": "Authorization"})
    if not auth_values and not has_query:
        if b"Signature" in query_names or b"AWSAccessKeyId" in query_names:
            raise SigV4Error("InvalidRequest", "The authorization mechanism you have provided is not "
                             "supported. Please use AWS4-HMAC-SHA256.", 400)
        raise _access_denied("Access Denied")
    if headers.get("x-amz-security-token") or b"X-Amz-Security-Token" in query_names:
        raise SigV4Error("InvalidToken", "The provided token is malformed or otherwise invalid.", 400)
    if auth_values:
        return _parse_header_auth(request.method, raw_path, raw_query, pairs, headers, auth_values, region)
    return _parse_query_auth(request.method, raw_path, raw_query, pairs, headers, region)


def _candidates(method: str, raw_path: str, raw_query: str, pairs, headers, signed, payload_hash,
                skip_signature: bool) -> tuple[str, ...]:
    query_pairs = [(n, v) for n, v, _, _ in pairs if not (skip_signature and n == b"X-Amz-Signature")]
    normal = build_canonical_request(method, canonical_uri(raw_path), canonical_query(query_pairs),
                                     headers, signed, payload_hash)
    raw = build_canonical_request(method, raw_path or "/", _raw_query_form(raw_query, skip_signature),
                                  headers, signed, payload_hash)
    return (normal,) if raw == normal else (normal, raw)


def _parse_header_auth(method, raw_path, raw_query, pairs, headers, auth_values, region) -> ParsedAuth:
    if len(auth_values) > 1:
        raise _malformed_header("multiple Authorization headers")
    value = auth_values[0].strip()
    scheme, _, rest = value.partition(" ")
    if scheme != ALGORITHM:
        raise SigV4Error("InvalidRequest", "The authorization mechanism you have provided is not "
                         "supported. Please use AWS4-HMAC-SHA256.", 400)
    fields: dict[str, str] = {}
    for component in rest.split(","):
        name, eq, val = component.strip().partition("=")
        if not eq or name not in ("Credential", "SignedHeaders", "Signature") or name in fields:
            raise _malformed_header(f'the component "{component.strip()[:64]}" is not valid; expecting '
                                    '"Credential=..., SignedHeaders=..., Signature=..."')
        fields[name] = val.strip()
    for name in ("Credential", "SignedHeaders", "Signature"):
        if name not in fields:
            raise _malformed_header(f"missing {name}")

    amz_date_header = _single(headers, "x-amz-date")
    if amz_date_header is not None:
        request_time = _parse_amz_date(amz_date_header)
        amz_date, date_header = amz_date_header, "x-amz-date"
    else:
        date_value = _single(headers, "date")
        request_time = None
        if date_value:
            try:
                parsed_date = parsedate_to_datetime(date_value)
                if parsed_date.tzinfo is None:  # "-0000": UTC by RFC 5322
                    parsed_date = parsed_date.replace(tzinfo=timezone.utc)
                request_time = parsed_date.timestamp()
            except (TypeError, ValueError, IndexError):
                request_time = None
        amz_date = _format_amz_date(request_time) if request_time is not None else ""
        date_header = "date"
    if request_time is None:
        raise _access_denied("AWS authentication requires a valid Date or x-amz-date header")

    akid, scope = _check_scope(fields["Credential"], amz_date, region, query=False)
    signed = _parse_signed_headers(fields["SignedHeaders"], _malformed_header)

    content_sha256 = _single(headers, "x-amz-content-sha256")
    if content_sha256 is None:
        raise SigV4Error("InvalidRequest",
                         "Missing required header for this request: x-amz-content-sha256", 400)
    content_sha256, mode = _payload_mode(content_sha256)
    _check_signed(headers, signed, ("host", "x-amz-content-sha256", date_header))
    # The canonical request carries the header's value as sent (what the client hashed).
    signed_value = headers["x-amz-content-sha256"][0].strip()
    candidates = _candidates(method, raw_path, raw_query, pairs, headers, signed, signed_value, False)
    return ParsedAuth(AUTH_HEADER, akid, region, amz_date, scope, request_time, signed,
                      fields["Signature"], content_sha256, mode, None, candidates)


def _parse_query_auth(method, raw_path, raw_query, pairs, headers, region) -> ParsedAuth:
    params: dict[str, str] = {}
    for name, value, _, _ in pairs:
        key = name.decode("utf-8", "replace")
        if key in _QUERY_AUTH_PARAMS or key == "X-Amz-Content-Sha256":
            if key in params:
                raise _query_error(f"Duplicate query parameter {key}.")
            params[key] = value.decode("utf-8", "replace")
    if any(p not in params for p in _QUERY_AUTH_PARAMS):
        raise _query_error("Query-string authentication version 4 requires the X-Amz-Algorithm, "
                           "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                           "X-Amz-Expires parameters.")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    amz_date = params["X-Amz-Date"]
    request_time = _parse_amz_date(amz_date)
    if request_time is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires_text = params["X-Amz-Expires"]
    if not _DIGITS_RE.fullmatch(expires_text):
        raise _query_error("X-Amz-Expires should be a number")
    expires = int(expires_text)
    if expires > MAX_PRESIGN_EXPIRES:
        raise _query_error("X-Amz-Expires must be less than a week (in seconds) that is 604800")
    if expires < 1:
        raise _query_error("X-Amz-Expires must be between 1 and 604800 seconds")
    akid, scope = _check_scope(params["X-Amz-Credential"], amz_date, region, query=True)
    signed = _parse_signed_headers(
        params["X-Amz-SignedHeaders"],
        lambda detail: _query_error(f"Error parsing the X-Amz-SignedHeaders parameter; {detail}"))
    # "Using Query Parameters": the payload is UNSIGNED-PAYLOAD, unless the URL itself carries a
    # signed X-Amz-Content-Sha256 (or a signed header does, as botocore would then have used it).
    payload = params.get("X-Amz-Content-Sha256")
    if payload is None and "x-amz-content-sha256" in signed:
        payload = _single(headers, "x-amz-content-sha256")
    payload = payload if payload is not None else UNSIGNED_PAYLOAD
    content_sha256, mode = _payload_mode(payload)
    if mode not in (PAYLOAD_UNSIGNED, PAYLOAD_SHA256):
        raise SigV4Error("InvalidRequest", "A presigned URL cannot carry an aws-chunked payload.", 400)
    _check_signed(headers, signed, ("host",))
    candidates = _candidates(method, raw_path, raw_query, pairs, headers, signed, payload, True)
    return ParsedAuth(AUTH_QUERY, akid, region, amz_date, scope, request_time, signed,
                      params["X-Amz-Signature"], content_sha256, mode, expires, candidates)


# ---------------------------------------------------------------------------------------------------
# Verification


def verify_parsed(parsed: ParsedAuth, secret: str | None, now: float | None = None,
                  key_cache: SigningKeyCache | None = None) -> VerifiedRequest:
    """Check the clock and the signature of a :func:`parse_request` result.

    ``secret`` is the secret access key of ``parsed.access_key_id`` (``None``: unknown key).
    ``now`` is Unix seconds (default: ``time.time()``). Raises :class:`SigV4Error`:
    ``InvalidAccessKeyId``, ``RequestTimeTooSkewed`` (header auth more than 15 minutes off),
    ``AccessDenied`` ("Request has expired" / "Request is not valid yet", presigned),
    ``SignatureDoesNotMatch``.
    """
    if secret is None:
        raise SigV4Error("InvalidAccessKeyId",
                         "The AWS Access Key Id you provided does not exist in our records.", 403,
                         {"AWSAccessKeyId": parsed.access_key_id})
    now = time.time() if now is None else now
    expires_at = None
    if parsed.auth_type == AUTH_HEADER:
        if abs(now - parsed.request_time) > MAX_SKEW_SECONDS:
            raise SigV4Error(
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.", 403,
                {"RequestTime": parsed.amz_date, "ServerTime": _format_amz_date(now),
                 "MaxAllowedSkewMilliseconds": str(MAX_SKEW_SECONDS * 1000)})
    else:
        expires_at = parsed.request_time + (parsed.expires or 0)
        if now > expires_at:
            raise _access_denied("Request has expired", **{
                "X-Amz-Expires": str(parsed.expires), "Expires": _format_amz_date(expires_at),
                "ServerTime": _format_amz_date(now)})
        if parsed.request_time - now > MAX_SKEW_SECONDS:
            raise _access_denied("Request is not valid yet", **{
                "X-Amz-Date": parsed.amz_date, "ServerTime": _format_amz_date(now)})
    cache = key_cache or _KEY_CACHE
    key = cache.get(secret, parsed.amz_date[:8], parsed.region, SERVICE)
    matched = False
    first_sts = ""
    for canonical in parsed.canonical_requests:
        sts = string_to_sign(parsed.amz_date, parsed.scope, canonical)
        first_sts = first_sts or sts
        # Every candidate is computed and compared: no early exit that would time the first form.
        matched |= signatures_equal(hmac_hex(key, sts), parsed.signature)
    if not matched:
        raise SigV4Error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check "
            "your key and signing method.", 403,
            {"AWSAccessKeyId": parsed.access_key_id, "StringToSign": first_sts,
             "SignatureProvided": parsed.signature[:128],
             "CanonicalRequest": parsed.canonical_requests[0]})
    return VerifiedRequest(
        access_key_id=parsed.access_key_id, auth_type=parsed.auth_type,
        payload_mode=parsed.payload_mode, content_sha256=parsed.content_sha256,
        amz_date=parsed.amz_date, scope=parsed.scope, region=parsed.region,
        signed_headers=parsed.signed_headers, signature=parsed.signature.lower(), signing_key=key,
        request_time=parsed.request_time, expires_at=expires_at)


def verify(request: SigV4Request, lookup_secret: Callable[[str], str | None], region: str,
           now: float | None = None, key_cache: SigningKeyCache | None = None) -> VerifiedRequest:
    """Verify a request's SigV4 signature (header or presigned form); see the module docstring.

    ``lookup_secret(access_key_id)`` returns the secret access key, or ``None`` for an unknown key
    (``InvalidAccessKeyId``). ``region``: the region this endpoint serves. ``now``: Unix seconds
    (default ``time.time()``). Returns a :class:`VerifiedRequest`; raises :class:`SigV4Error` (see
    :func:`parse_request` and :func:`verify_parsed` for the codes). The body is *not* read here: check
    it with :meth:`VerifiedRequest.payload_verifier` or :mod:`shared.auth.aws_chunked`.
    """
    parsed = parse_request(request, region)
    return verify_parsed(parsed, lookup_secret(parsed.access_key_id), now, key_cache)


class ContentSha256Verifier:
    """Incremental check of a plain body against the signed hex ``x-amz-content-sha256``.

    ``update(data)`` per block (bytes-like), then ``finish()``, which raises
    ``XAmzContentSHA256Mismatch`` (400) when the body's SHA-256 differs; returns the hex digest.
    """

    def __init__(self, expected_hex: str):
        self.expected = expected_hex.lower()
        self._hash = hashlib.sha256()
        self.length = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self.length += len(data)

    def finish(self) -> str:
        computed = self._hash.hexdigest()
        if not hmac.compare_digest(computed.encode(), self.expected.encode()):
            raise SigV4Error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.", 400,
                {"ClientComputedContentSHA256": self.expected,
                 "S3ComputedContentSHA256": computed})
        return computed
