"""S3 request checksums: ``x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}`` and ``Content-MD5``.

An S3 client sends at most one ``x-amz-checksum-<algorithm>`` value, either as a header or, when the
body is ``aws-chunked``, as a trailer declared in ``x-amz-trailer`` (boto3 >= 1.36 does so by default,
``x-amz-trailer: x-amz-checksum-crc32``); ``x-amz-sdk-checksum-algorithm`` names the algorithm. The
value is the base64 of the checksum, big-endian for the CRCs (S3 API reference, "Checking object
integrity"). :class:`RequestChecksum` computes it incrementally over the decoded body and compares it
in constant time; :class:`ChecksumResult` is what to store with the object.

CRC32 is :func:`zlib.crc32`; CRC32C is the ``google-crc32c`` package (C, hardware accelerated)
when installed, else a table-driven pure-Python fallback (correct but slow, ~MB/s); CRC64NVME is
``awscrt.checksums.crc64nvme`` when ``awscrt`` happens to be installed, else pure Python (slow).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.auth.sigv4 import SigV4Error, normalize_headers
from shared.protocol.rules import CHECKSUM_ALGORITHMS, CHECKSUM_PREFIX

ALGORITHMS = CHECKSUM_ALGORITHMS
DIGEST_SIZES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}
HEADER_PREFIX = CHECKSUM_PREFIX
# x-amz-checksum-* headers that are not a checksum value (CreateMultipartUpload, GetObject).
_OTHER_CHECKSUM_HEADERS = frozenset({"x-amz-checksum-algorithm", "x-amz-checksum-type",
                                     "x-amz-checksum-mode"})


def header_name(algorithm: str) -> str:
    """``x-amz-checksum-<algorithm>`` (lower case)."""
    return HEADER_PREFIX + algorithm


def _reflected_table(poly: int, width: int) -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc & ((1 << width) - 1))
    return table


_CRC32C_TABLE: list[int] | None = None
_CRC64NVME_TABLE: list[int] | None = None


def _crc32c_python(crc: int, data: bytes) -> int:
    global _CRC32C_TABLE
    if _CRC32C_TABLE is None:
        _CRC32C_TABLE = _reflected_table(0x82F63B78, 32)
    table = _CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc64nvme_python(crc: int, data: bytes) -> int:
    global _CRC64NVME_TABLE
    if _CRC64NVME_TABLE is None:
        _CRC64NVME_TABLE = _reflected_table(0x9A6C9329AC4BC9B5, 64)
    table = _CRC64NVME_TABLE
    mask = 0xFFFFFFFFFFFFFFFF
    crc ^= mask
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ mask


try:  # pragma: no cover - which branch depends on what is installed
    import google_crc32c as _google_crc32c

    def _crc32c(crc: int, data: bytes) -> int:
        return _google_crc32c.extend(crc, bytes(data))
except ImportError:  # pragma: no cover
    _crc32c = _crc32c_python

try:  # pragma: no cover
    from awscrt import checksums as _awscrt_checksums

    def _crc64nvme(crc: int, data: bytes) -> int:
        return _awscrt_checksums.crc64nvme(bytes(data), crc)
except ImportError:  # pragma: no cover
    _crc64nvme = _crc64nvme_python


class Checksum:
    """One running checksum: ``update(data)``, then ``digest()`` (big-endian bytes) or
    ``b64digest()`` (the form S3 puts in ``x-amz-checksum-*``)."""

    def __init__(self, algorithm: str):
        algorithm = algorithm.lower()
        if algorithm not in DIGEST_SIZES:
            raise ValueError(f"unsupported checksum algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._crc = 0
        self._hash = hashlib.new(algorithm) if algorithm in ("sha1", "sha256") else None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        elif self.algorithm == "crc32":
            self._crc = zlib.crc32(data, self._crc)
        elif self.algorithm == "crc32c":
            self._crc = _crc32c(self._crc, data)
        else:
            self._crc = _crc64nvme(self._crc, data)

    def digest(self) -> bytes:
        if self._hash is not None:
            return self._hash.digest()
        return self._crc.to_bytes(DIGEST_SIZES[self.algorithm], "big")

    def b64digest(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def checksum_of(algorithm: str, data: bytes) -> str:
    """Base64 ``x-amz-checksum-<algorithm>`` value of ``data``."""
    c = Checksum(algorithm)
    c.update(data)
    return c.b64digest()


def _decode_value(value: str, size: int) -> bytes | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


@dataclass(frozen=True)
class ChecksumResult:
    """The checksum a request carried and that matched: ``algorithm`` (``"crc32"``, ...) and
    ``value`` (base64, as in ``x-amz-checksum-<algorithm>``)."""

    algorithm: str
    value: str


def _bad_digest(algorithm: str) -> SigV4Error:
    """A checksum value that does not match the body, or that no body could match (not the base64 of a
    digest of the algorithm's size): ``BadDigest``, as ceph/s3-tests expects of both."""
    return SigV4Error("BadDigest", f"The {algorithm.upper()} you specified did not match the calculated "
                      "checksum.", 400)


class RequestChecksum:
    """The checksums one request's headers ask for, checked incrementally over the decoded body.

    Build with :meth:`from_headers`; ``update(data)`` per block; ``finish(trailers)`` at the end
    (``trailers``: the aws-chunked trailer headers, lower-case name -> value), which returns the
    :class:`ChecksumResult` to store (``None`` when the request had no ``x-amz-checksum-*``) or raises
    ``BadDigest`` (a value did not match; also for ``Content-MD5``) or ``MalformedTrailerError`` (a
    declared checksum trailer did not arrive). ``algorithm``/``in_trailer`` say what was asked.
    """

    def __init__(self, algorithm: str | None, expected: bytes | None, in_trailer: bool,
                 md5: bytes | None):
        self.algorithm = algorithm
        self.in_trailer = in_trailer
        self._expected = expected
        self._md5_expected = md5
        self._checksum = Checksum(algorithm) if algorithm else None
        self._md5 = hashlib.md5() if md5 is not None else None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> RequestChecksum:
        """Read ``x-amz-checksum-*``, ``x-amz-trailer``, ``x-amz-sdk-checksum-algorithm`` and
        ``Content-MD5`` from request headers (mapping or pairs, as :func:`normalize_headers`).

        Raises ``InvalidRequest`` (more than one checksum, an unsupported algorithm such as the
        xxhash ones, an inconsistent ``x-amz-sdk-checksum-algorithm``, a malformed value) or
        ``InvalidDigest`` (a malformed ``Content-MD5``).
        """
        h = normalize_headers(headers)
        found: list[tuple[str, str]] = []
        for name, values in h.items():
            if not name.startswith(HEADER_PREFIX) or name in _OTHER_CHECKSUM_HEADERS:
                continue
            alg = name[len(HEADER_PREFIX):]
            if alg not in DIGEST_SIZES:
                raise SigV4Error("InvalidRequest", f"The checksum algorithm of {name} is not "
                                 "supported.", 400)
            found.extend((alg, value) for value in values)
        trailer_names = [n.strip().lower() for v in h.get("x-amz-trailer", ()) for n in v.split(",")
                         if n.strip()]
        trailed = []
        for name in trailer_names:
            if name.startswith(HEADER_PREFIX):
                alg = name[len(HEADER_PREFIX):]
                if alg not in DIGEST_SIZES:
                    raise SigV4Error("InvalidRequest", f"The value specified in the x-amz-trailer "
                                     f"header is not supported: {name}", 400)
                trailed.append(alg)
        if len(found) + len(trailed) > 1:
            raise SigV4Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple "
                             "checksum Types are not allowed.", 400)
        algorithm = expected = None
        in_trailer = False
        if found:
            algorithm, value = found[0]
            expected = _decode_value(value, DIGEST_SIZES[algorithm])
            if expected is None:
                raise _bad_digest(algorithm)
        elif trailed:
            algorithm, in_trailer = trailed[0], True
        sdk = h.get("x-amz-sdk-checksum-algorithm")
        if sdk:
            sdk_alg = sdk[0].strip().lower()
            if sdk_alg not in DIGEST_SIZES or (algorithm is not None and sdk_alg != algorithm):
                raise SigV4Error("InvalidRequest",
                                 "Value for x-amz-sdk-checksum-algorithm header is invalid.", 400)
            if algorithm is None:
                raise SigV4Error("InvalidRequest", "x-amz-sdk-checksum-algorithm specified, but no "
                                 "corresponding x-amz-checksum-* or x-amz-trailer headers were found.",
                                 400)
        md5 = None
        md5_values = h.get("content-md5")
        if md5_values:
            md5 = _decode_value(md5_values[0], 16)
            if md5 is None or len(md5_values) > 1:
                raise SigV4Error("InvalidDigest", "The Content-MD5 you specified was invalid.", 400)
        return cls(algorithm, expected, in_trailer, md5)

    @property
    def trailer_name(self) -> str | None:
        """The trailer header that must carry the value, or ``None``."""
        return header_name(self.algorithm) if self.in_trailer and self.algorithm else None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._checksum is not None:
            self._checksum.update(data)
        if self._md5 is not None:
            self._md5.update(data)

    def finish(self, trailers: Mapping[str, str] | None = None) -> ChecksumResult | None:
        if self._md5 is not None and not hmac.compare_digest(self._md5.digest(), self._md5_expected):
            raise SigV4Error("BadDigest", "The Content-MD5 you specified did not match what we "
                             "received.", 400)
        if self._checksum is None:
            return None
        name = header_name(self.algorithm)
        expected = self._expected
        if self.in_trailer:
            value = (trailers or {}).get(name)
            if value is None:
                raise SigV4Error("MalformedTrailerError", f"The request's trailer {name} is missing.",
                                 400)
            expected = _decode_value(value, DIGEST_SIZES[self.algorithm])
            if expected is None:
                raise _bad_digest(self.algorithm)
        computed = self._checksum.digest()
        if not hmac.compare_digest(computed, expected):
            raise _bad_digest(self.algorithm)
        return ChecksumResult(self.algorithm, base64.b64encode(computed).decode("ascii"))
