"""How the parts a CompleteMultipartUpload names make one object: S3's validity rules, the multipart ETag,
and whether the parts' chunk lists joined are the object's. Pure: no SQL, no I/O (``leader/multipart.py``
reads the parts and acts on the plan).

S3 API reference, CompleteMultipartUpload: the parts are listed in strictly ascending part number
(``InvalidPartOrder``), each must exist with the ETag the client names (``InvalidPart``), and every part but
the last must be at least 5 MiB (``EntityTooSmall``). The object's ETag is the MD5 of the concatenated
binary MD5s of its parts, then ``-`` and the number of parts, as AWS computes it.

Joining without copying (README "S3 API"): a manifest has one chunk size, every chunk that long but the
last. The parts' chunk lists concatenated are such a manifest of the whole object exactly when every part
has the same chunk size and every part but the last is a whole number of chunks: the plan is then
``aligned``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import orjson

from shared.protocol.models import AssemblyPlan, PlannedPart, UploadProblem
from shared.protocol.rules import MAX_FILE_SIZE, MAX_PART_NUMBER, multipart_etag

# Bytes every part but the last must have at least: S3's 5 MiB minimum part size.
MIN_PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredPart:
    """The latest upload of one part, as recorded: sizes in bytes, ``etag`` its content's MD5 (32 hex),
    ``digests`` its chunks' packed 32-byte SHA-256 digests and ``object_headers`` (JSON text: its
    checksum) or None."""

    part_number: int
    size: int
    chunk_size: int
    replication: int
    etag: str
    digests: bytes
    object_headers: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A valid request's object: ``size`` (bytes), ``chunk_size`` (the first part's), ``replication`` (the
    fewest of the parts'), ``aligned`` (see the module docstring), the multipart ``etag``, ``digests``
    (every part's packed digests, joined in order) and their SHA-256 ``digests_sha256``, and the
    ``parts`` in order."""

    size: int
    chunk_size: int
    replication: int
    aligned: bool
    etag: str
    digests: bytes
    digests_sha256: str
    parts: tuple[StoredPart, ...]

    def wire(self) -> AssemblyPlan:
        """The plan as ``POST /multipart/{upload_id}/assemble`` answers it (digests in base64)."""
        return AssemblyPlan(
            size=self.size, chunk_size=self.chunk_size, replication=self.replication, aligned=self.aligned,
            etag=self.etag, digests_sha256=self.digests_sha256,
            parts=[PlannedPart(part_number=p.part_number, size=p.size, chunk_size=p.chunk_size, etag=p.etag,
                               digests=base64.b64encode(p.digests).decode(),
                               object_headers=None if p.object_headers is None else orjson.loads(p.object_headers))
                   for p in self.parts])


def _invalid_part(number: int, why: str) -> UploadProblem:
    return UploadProblem(code="InvalidPart", message=(
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the "
        f"specified entity tag may not match the part's entity tag (part {number}: {why})."))


def requested_numbers(requested: list[tuple[int, str]]) -> list[int]:
    """The part numbers of ``requested`` that can name a part (1..``MAX_PART_NUMBER``): those to read."""
    return [n for n, _ in requested if 1 <= n <= MAX_PART_NUMBER]


def plan(requested: list[tuple[int, str]], stored: dict[int, StoredPart]) -> Plan | UploadProblem:
    """The :class:`Plan` of joining ``requested`` (``[(part_number, etag)]`` in the client's order, ETags
    with or without quotes) out of ``stored`` (the upload's parts by number, at least those of
    :func:`requested_numbers`), or the first :class:`UploadProblem` S3 would answer: ``InvalidPartOrder``,
    then ``InvalidPart``, then ``EntityTooSmall``, then ``EntityTooLarge`` (over 5 TiB in all)."""
    numbers = [n for n, _ in requested]
    if any(b <= a for a, b in zip(numbers, numbers[1:])):
        return UploadProblem(code="InvalidPartOrder", message=(
            "The list of parts was not in ascending order. The parts list must be specified in order by "
            "part number."))
    parts: list[StoredPart] = []
    for number, etag in requested:
        part = stored.get(number)
        if part is None:
            return _invalid_part(number, "no such part")
        if etag.strip().strip('"').lower() != part.etag:
            return _invalid_part(number, f'its ETag is "{part.etag}"')
        parts.append(part)
    for part in parts[:-1]:
        if part.size < MIN_PART_SIZE:
            return UploadProblem(code="EntityTooSmall", message=(
                "Your proposed upload is smaller than the minimum allowed object size (part "
                f"{part.part_number} is {part.size} bytes; every part but the last needs {MIN_PART_SIZE})."))
    size = sum(p.size for p in parts)
    if size > MAX_FILE_SIZE:
        return UploadProblem(code="EntityTooLarge", message=(
            f"Your proposed upload exceeds the maximum allowed object size ({size} bytes; at most {MAX_FILE_SIZE})."))
    first = parts[0]
    aligned = (all(p.chunk_size == first.chunk_size for p in parts)
               and all(p.size % p.chunk_size == 0 for p in parts[:-1]))
    digests = b"".join(p.digests for p in parts)
    return Plan(size=size, chunk_size=first.chunk_size, replication=min(p.replication for p in parts),
                aligned=aligned, etag=multipart_etag([p.etag for p in parts]),
                digests=digests, digests_sha256=hashlib.sha256(digests).hexdigest(), parts=tuple(parts))
