"""Object headers (S3 API reference, PutObject and "Checking object integrity"): what a version keeps
besides its Content-Type and ``x-amz-meta-*``, and answers on GetObject and HeadObject.

* The standard headers S3 keeps: Cache-Control, Content-Disposition, Content-Encoding, Content-Language
  and Expires, as the writer sent them (``response-*`` query parameters still override them).
* The content's checksum: the ``x-amz-checksum-<algorithm>`` value a PutObject or UploadPart carried and
  that matched (``user_app/s3/payload.py``), with ``x-amz-checksum-type`` ``FULL_OBJECT``; a multipart
  object's is the one CreateMultipartUpload asked for (``x-amz-checksum-algorithm``, ``-type``):
  ``COMPOSITE``, the checksum of its parts' checksums with ``-<parts>`` (SHA-1, SHA-256, CRC32 and CRC32C
  by default), or ``FULL_OBJECT``, the checksum of the whole content (CRC64NVME's only type). It is
  answered only to ``x-amz-checksum-mode: ENABLED`` and only for the whole object, as S3 does.

Stored as one JSON object of lowercase names (``object_headers``; ``shared.protocol.rules``).
"""

from __future__ import annotations

import base64
import binascii

from shared.auth.checksums import Checksum, ChecksumResult, header_name
from shared.protocol.models import VersionInfo
from shared.protocol.rules import (
    CHECKSUM_ALGORITHM_HEADER, CHECKSUM_ALGORITHMS, CHECKSUM_TYPE_HEADER, STANDARD_OBJECT_HEADERS,
    canonical_user_metadata, split_checksum,
)
from user_app.s3.errors import S3Error

FULL_OBJECT, COMPOSITE = "FULL_OBJECT", "COMPOSITE"
# The checksum type of a multipart upload that names only an algorithm (S3's defaults), and the types each
# algorithm allows.
DEFAULT_TYPE = {"crc32": COMPOSITE, "crc32c": COMPOSITE, "sha1": COMPOSITE, "sha256": COMPOSITE,
                "crc64nvme": FULL_OBJECT}
ALLOWED_TYPES = {"crc32": {COMPOSITE, FULL_OBJECT}, "crc32c": {COMPOSITE, FULL_OBJECT}, "sha1": {COMPOSITE},
                 "sha256": {COMPOSITE}, "crc64nvme": {FULL_OBJECT}}
# The XML element of each algorithm in CompleteMultipartUpload's parts and answer.
XML_NAMES = {"crc32": "ChecksumCRC32", "crc32c": "ChecksumCRC32C", "crc64nvme": "ChecksumCRC64NVME",
             "sha1": "ChecksumSHA1", "sha256": "ChecksumSHA256"}


def encoded(headers: dict[str, str]) -> str | None:
    """The JSON text the leader stores for ``headers`` (None for none)."""
    return canonical_user_metadata(headers) if headers else None


def standard_headers(request_headers) -> dict[str, str]:
    """The standard object headers of a write request, by lowercase name. ``aws-chunked`` is taken out of
    Content-Encoding: it names how the request's body was framed, not the object's encoding (S3 API
    reference, "Signature Calculations for the Authorization Header: Transferring Payload in Multiple
    Chunks")."""
    out = {name: request_headers[name] for name in STANDARD_OBJECT_HEADERS if name in request_headers}
    if "content-encoding" in out:
        codings = [c.strip() for c in out["content-encoding"].split(",")]
        kept = ", ".join(c for c in codings if c and c.lower() != "aws-chunked")
        if kept:
            out["content-encoding"] = kept
        else:
            del out["content-encoding"]
    return out


def checksum_entries(result: ChecksumResult | None, kind: str = FULL_OBJECT) -> dict[str, str]:
    """What a version stores for a checksum that matched (nothing for none)."""
    if result is None:
        return {}
    return {header_name(result.algorithm): result.value, CHECKSUM_TYPE_HEADER: kind}


def checksum_of(headers: dict[str, str] | None) -> tuple[str, str] | None:
    """``(algorithm, value)`` of the checksum stored in ``headers``, or None."""
    for algorithm in CHECKSUM_ALGORITHMS:
        value = (headers or {}).get(header_name(algorithm))
        if value is not None:
            return algorithm, value
    return None


def served_headers(info: VersionInfo, with_checksum: bool) -> dict[str, str]:
    """The object headers a GetObject or HeadObject of ``info`` answers with: the standard ones, and with
    ``with_checksum`` (``x-amz-checksum-mode: ENABLED`` and the whole object asked) the checksum."""
    other, checksum = split_checksum(info.object_headers)
    # named as the response-* overrides name them, so that one replaces the other
    out = {"-".join(word.capitalize() for word in name.split("-")): value for name, value in other.items()}
    if with_checksum:  # an upload's chosen algorithm is no header of the object
        out.update({name: value for name, value in checksum.items() if name != CHECKSUM_ALGORITHM_HEADER})
    return out


def checksum_mode(request_headers) -> bool:
    return (request_headers.get("x-amz-checksum-mode") or "").strip().upper() == "ENABLED"


def _invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", message, 400)


def upload_checksum(request_headers) -> dict[str, str]:
    """The checksum entries a CreateMultipartUpload asks for (``x-amz-checksum-algorithm`` and
    ``x-amz-checksum-type``), for the upload's object headers. Raises ``InvalidRequest`` for an algorithm
    S3 does not have, a type that is not COMPOSITE or FULL_OBJECT, or a pair S3 does not allow."""
    raw_algorithm = request_headers.get(CHECKSUM_ALGORITHM_HEADER)
    raw_type = request_headers.get(CHECKSUM_TYPE_HEADER)
    if raw_algorithm is None:
        if raw_type is not None:
            raise _invalid_request("The x-amz-checksum-type header can only be used with the "
                                   "x-amz-checksum-algorithm header.")
        return {}
    algorithm = raw_algorithm.strip().lower()
    if algorithm not in ALLOWED_TYPES:
        raise _invalid_request(f"Checksum algorithm {raw_algorithm[:32]!r} is not supported.")
    kind = DEFAULT_TYPE[algorithm] if raw_type is None else raw_type.strip().upper()
    if kind not in ALLOWED_TYPES[algorithm]:
        raise _invalid_request(f"The {kind[:32]} checksum type cannot be used with the {algorithm} checksum "
                               "algorithm.")
    return {CHECKSUM_ALGORITHM_HEADER: algorithm, CHECKSUM_TYPE_HEADER: kind}


def checksum_element(upload_headers: dict[str, str] | None) -> str | None:
    """The XML element (``ChecksumCRC32``, ...) naming a part's checksum in the Complete document of an
    upload with ``upload_headers``, or None when the upload chose no checksum algorithm."""
    return XML_NAMES.get((upload_headers or {}).get(CHECKSUM_ALGORITHM_HEADER, ""))


def upload_checksum_answer(entries: dict[str, str]) -> dict[str, str]:
    """CreateMultipartUpload's answer headers for :func:`upload_checksum`'s ``entries``: the algorithm (in
    capitals, as S3 names it) and the type."""
    if not entries:
        return {}
    return {CHECKSUM_ALGORITHM_HEADER: entries[CHECKSUM_ALGORITHM_HEADER].upper(),
            CHECKSUM_TYPE_HEADER: entries[CHECKSUM_TYPE_HEADER]}


def _raw(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


class CompletedChecksum:
    """The checksum of a multipart object being completed with the upload's object headers
    ``upload_headers`` and the parts the leader's plan lists (each with its stored ``object_headers``).

    ``check_part(number, requested)`` compares a part's checksum as the Complete document names it with
    the stored one; ``update(block)`` takes the object's content when the type is FULL_OBJECT (``full``);
    ``entries()`` is what the object stores (nothing when the upload asked for none, or a part was
    uploaded without it). Raises ``InvalidPart`` (a part's checksum differs) from ``check_part``."""

    def __init__(self, upload_headers: dict[str, str] | None, parts: list[dict]) -> None:
        headers = upload_headers or {}
        self.algorithm = headers.get(CHECKSUM_ALGORITHM_HEADER)
        self.kind = headers.get(CHECKSUM_TYPE_HEADER)
        self._stored = {p["part_number"]: (p.get("object_headers") or {}).get(header_name(self.algorithm))
                        for p in parts} if self.algorithm else {}
        self._full = Checksum(self.algorithm) if self.algorithm and self.kind == FULL_OBJECT else None

    @property
    def full(self) -> bool:
        return self._full is not None

    def check_part(self, number: int, requested: str | None) -> None:
        stored = self._stored.get(number)
        if requested is None or stored is None:
            return
        if _raw(requested.strip()) != _raw(stored):
            raise S3Error("InvalidPart", "One or more of the specified parts could not be found. The part may "
                          "not have been uploaded, or the specified entity tag may not match the part's "
                          f"entity tag (part {number}: its {self.algorithm} checksum is {stored}).", 400)

    def update(self, block: bytes) -> None:
        if self._full is not None:
            self._full.update(block)

    def entries(self) -> dict[str, str]:
        if not self.algorithm or any(v is None for v in self._stored.values()):
            return {}
        if self._full is not None:
            return {header_name(self.algorithm): self._full.b64digest(), CHECKSUM_TYPE_HEADER: FULL_OBJECT}
        of_parts = Checksum(self.algorithm)
        for number in sorted(self._stored):
            of_parts.update(_raw(self._stored[number]) or b"")
        value = f"{of_parts.b64digest()}-{len(self._stored)}"
        return {header_name(self.algorithm): value, CHECKSUM_TYPE_HEADER: COMPOSITE}
