"""Object versions as S3 sees them: version ids, delete markers and ListObjectVersions.

RingFS keeps every committed version of a file, numbered from 1, and a delete moves all of a path's
committed versions to the trash at once, with one ``deleted_at`` (``leader/trash.py``). S3's view of that
history, newest first per key:

* a **version** per committed or trashed RingFS version, ``VersionId`` its number;
* a **delete marker** per delete whose versions are still in the trash, ``VersionId``
  ``dm-<deleted_at>`` (the delete's UNIX time exactly as the leader keeps it, so it names that delete);
  it sorts just above the newest version it hid, and it is the latest when nothing was written since;
* an explicit folder (a ``dir/`` marker) is one version ``null``.

DeleteObject with a version id (``user_app/s3/deletes.py``): a number removes that version for good
(AWS documents this as permanent: it skips the trash), a delete marker's id restores the versions it hid
(as removing the marker does in S3: when it was the latest, the object is back). A version in the trash
is listed, but reading it needs its delete marker removed first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.responses import Response

from shared.protocol.rules import MAX_VERSION
from user_app.s3 import xml
from user_app.s3.buckets import owner
from user_app.s3.context import S3Request
from user_app.s3.errors import S3Error, invalid_argument
from user_app.s3.listing import common_parameters, scan_page
from user_app.s3.names import EMPTY_MD5

MARKER_PREFIX = "dm-"
NULL_VERSION = "null"


def marker_id(deleted_at: float) -> str:
    """The ``VersionId`` of the delete marker of the delete at ``deleted_at`` (UNIX seconds)."""
    return f"{MARKER_PREFIX}{deleted_at!r}"


@dataclass(frozen=True)
class VersionRef:
    """A parsed ``versionId``: a RingFS version ``number``, a delete marker (``deleted_at``), or S3's
    ``null`` version (both None)."""

    number: int | None = None
    deleted_at: float | None = None

    @property
    def is_marker(self) -> bool:
        return self.deleted_at is not None


def parse_version_ref(raw: str) -> VersionRef:
    """``versionId`` as a :class:`VersionRef`. Raises ``InvalidArgument`` ("Invalid version id specified")
    for anything but a version number, a delete marker's id or ``null``."""
    if raw == NULL_VERSION:
        return VersionRef()
    if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_VERSION:
        return VersionRef(number=int(raw))
    if raw.startswith(MARKER_PREFIX):
        try:
            deleted_at = float(raw[len(MARKER_PREFIX):])
        except ValueError:
            deleted_at = -1.0
        if math.isfinite(deleted_at) and deleted_at > 0 and raw.isascii():
            return VersionRef(deleted_at=deleted_at)
    raise invalid_argument("Invalid version id specified", "versionId", raw)


def delete_marker_read(raw: str) -> S3Error:
    """What a GET or HEAD of a delete marker's version id answers (405, as S3)."""
    return S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.", 405,
                   headers={"x-amz-delete-marker": "true", "x-amz-version-id": raw},
                   Method="GET", ResourceType="DeleteMarker")


# ---------------------------------------------------------------- ListObjectVersions


@dataclass
class Entry:
    """One ``<Version>``, ``<DeleteMarker>`` or ``<CommonPrefixes>`` of a listing (``kind``), ``rank``
    ordering the entries of one key (higher is newer)."""

    kind: str
    key: str
    version_id: str | None = None
    rank: float = 0.0
    when: float = 0.0
    etag: str | None = None
    size: int = 0
    latest: bool = False


def key_entries(key: str, item: dict) -> list[Entry]:
    """The versions and delete markers of one key of a history scan (``leader/scan.py``), newest first.
    A delete marker ranks just above the newest version it hid: the versions a delete moved to the trash
    were all committed before it, and any version numbered above them was committed after it."""
    if item.get("folder"):
        return [Entry("Version", key, NULL_VERSION, when=item.get("created_at") or 0.0, etag=EMPTY_MD5,
                      latest=True)]
    entries, hid = [], {}
    for v in item["versions"]:
        entries.append(Entry("Version", key, str(v["version"]), v["version"],
                             v.get("committed_at") or v["created_at"], v.get("etag") or v["sha256"], v["size"]))
        if v["state"] == "deleted":
            hid[v["deleted_at"]] = max(hid.get(v["deleted_at"], 0), v["version"])
    entries += [Entry("DeleteMarker", key, marker_id(at), top + 0.5, at) for at, top in hid.items()]
    entries.sort(key=lambda e: e.rank, reverse=True)
    if entries:
        entries[0].latest = True
    return entries


async def latest_delete_marker(ctx: S3Request, path: str) -> str | None:
    """The version id of ``path``'s delete marker when it is the key's latest entry (the key reads as
    deleted), else None: one history scan of that key, made only when a read found nothing."""
    answer = await ctx.services.leader.rpc_scan(prefix=path, start=path, limit=1, history=True)
    items = [item for item in answer["items"] if item.get("key") == path and "versions" in item]
    if not items:
        return None
    entries = key_entries(path, items[0])
    return entries[0].version_id if entries and entries[0].kind == "DeleteMarker" else None


def _after_marker(entries: list[Entry], marker: VersionRef, raw: str) -> list[Entry]:
    """The entries of the key-marker's key that come after ``version-id-marker`` (older than it)."""
    ids = [e.version_id for e in entries]
    if raw in ids:
        return entries[ids.index(raw) + 1:]
    if marker.number is not None:
        return [e for e in entries if e.rank < marker.number]
    if marker.is_marker:  # a marker gone meanwhile: what was older than its delete
        return [e for e in entries if e.when < marker.deleted_at]
    return []  # "null": the key's only version


async def list_object_versions(ctx: S3Request) -> Response:
    """ListObjectVersions (``GET /bucket?versions``): ``prefix``, ``delimiter``, ``key-marker``,
    ``version-id-marker``, ``max-keys`` (each version, delete marker and common prefix counts one) and
    ``encoding-type=url``, as ListObjects takes them."""
    encode, prefix, delimiter, max_keys = await common_parameters(ctx)
    key_marker = ctx.query("key-marker") or None
    raw_marker = ctx.query("version-id-marker") or None
    marker = None
    if raw_marker is not None:
        if key_marker is None:
            raise invalid_argument("A version-id marker cannot be specified without a key marker.",
                                   "version-id-marker", raw_marker)
        marker = parse_version_ref(raw_marker)
    page = await scan_page(ctx, prefix, delimiter, key_marker, max_keys, history=True, at_after=marker is not None)
    entries: list[Entry] = []
    for key, item in page.items:
        if item is None:
            entries.append(Entry("CommonPrefixes", key))
            continue
        mine = key_entries(key, item)
        if marker is not None and key == key_marker:
            mine = _after_marker(mine, marker, raw_marker)
        entries += mine
    truncated = page.truncated or len(entries) > max_keys
    entries = entries[:max_keys]
    next_key = next_version = None
    if truncated:
        last = entries[-1] if entries else None
        next_key = last.key if last else page.last
        next_version = last.version_id if last else None
    root = xml.document("ListVersionsResult")
    xml.add_all(root, [("Name", ctx.bucket), ("Prefix", encode(prefix)), ("KeyMarker", encode(key_marker or "")),
                       ("VersionIdMarker", raw_marker or ""),
                       ("NextKeyMarker", encode(next_key) if next_key is not None else None),
                       ("NextVersionIdMarker", next_version), ("MaxKeys", max_keys),
                       ("Delimiter", encode(delimiter) if delimiter else None),
                       ("EncodingType", "url" if ctx.query("encoding-type") else None),
                       ("IsTruncated", truncated)])
    for e in entries:
        if e.kind == "CommonPrefixes":
            xml.add(xml.add(root, "CommonPrefixes"), "Prefix", encode(e.key))
            continue
        element = xml.add_all(xml.add(root, e.kind), [("Key", encode(e.key)), ("VersionId", e.version_id),
                                                      ("IsLatest", e.latest), ("LastModified", xml.iso_time(e.when))])
        if e.kind == "Version":
            xml.add_all(element, [("ETag", f'"{e.etag}"'), ("Size", e.size), ("StorageClass", "STANDARD")])
        owner(element, ctx)
    return ctx.xml(root)
