"""ListObjectsV2 and ListObjects (v1): a bucket's keys in UTF-8 byte order, one leader scan per page
(``GET /scan`` on the leader, which rolls keys up into common prefixes itself, so a folder of a million
files below a delimiter costs one indexed query).

Parameters as in the S3 API reference: ``prefix`` (a plain string prefix, not folder-aligned),
``delimiter`` (``CommonPrefixes`` end in it), ``max-keys`` (0-1,000; more is cut to 1,000),
``continuation-token`` (opaque: the base64url of the last key returned) or v1's ``marker``,
``start-after``, ``encoding-type=url`` (keys, prefixes and the delimiter percent-encoded), ``fetch-owner``.
Explicit folders are listed as their folder-marker keys (``docs/``).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import quote

from starlette.responses import Response

from shared.errors import Forbidden
from shared.protocol.rules import MAX_SCAN_LIMIT
from user_app.s3 import xml
from user_app.s3.buckets import owner
from user_app.s3.context import S3Request
from user_app.s3.errors import invalid_argument
from user_app.s3.names import bucket_folder
from user_app.s3.names import EMPTY_MD5

MAX_KEYS = MAX_SCAN_LIMIT  # S3's MaxKeys bound: a page is one leader scan


@dataclass
class Page:
    """One page of a listing: ``items`` in key order, each ``(key, entry)`` with the leader's entry for
    an object or folder marker, or ``(prefix, None)`` for a common prefix."""

    items: list[tuple[str, dict | None]]
    truncated: bool
    last: str | None  # the last key or prefix of the page (bucket-relative), for the next page


def max_keys_of(raw: str | None) -> int:
    if raw is None:
        return MAX_KEYS
    if not raw.isascii() or not raw.isdigit():
        raise invalid_argument("Provided max-keys not an integer or within integer range", "max-keys", raw)
    return min(int(raw), MAX_KEYS)


def encoder_of(ctx: S3Request):
    kind = ctx.query("encoding-type")
    if kind is None:
        return lambda text: text
    if kind.lower() != "url":
        raise invalid_argument("Invalid Encoding Method specified in Request", "encoding-type", kind)
    return lambda text: quote(text, safe="/")  # as AWS encodes: '/' stays, space is %20


def _readable(ctx: S3Request, folder: str) -> list[str] | None:
    """The read prefixes to filter by, None when the key reads the whole bucket."""
    principal = ctx.principal
    if principal.may_read(folder + "/"):
        return None
    if not principal.reads_anything_under(folder):
        raise Forbidden(f"access key {principal.access_key} may not read anything in bucket {folder!r}")
    return list(principal.read_prefixes)


async def scan_page(ctx: S3Request, prefix: str, delimiter: str | None, after: str | None,
                    limit: int, *, history: bool = False, at_after: bool = False) -> Page:
    """Up to ``limit`` keys and common prefixes of the bucket after ``after`` (bucket-relative), from
    ``after`` itself with ``at_after``; with ``history``, keys with all their versions (the leader's
    history scan, ``leader/scan.py``)."""
    folder = bucket_folder(ctx.bucket)
    if limit == 0 or _unstorable(prefix) is not None:
        return Page([], False, None)  # no key holds a control character: such a prefix matches nothing
    if delimiter is not None and _unstorable(delimiter) is not None:
        delimiter = None  # ... and such a delimiter occurs in no key: nothing rolls up
    start = None
    if after is not None and (cut := _unstorable(after)) is not None:
        # A key's next character after after[:cut] is no control character: below U+0020 (C0), every
        # key that sorts after after[:cut] sorts after after; above (DEL, C1), the keys after after are
        # those from after[:cut] + U+00A0, the first character a path may hold past them.
        start = None if after[cut] < "\x20" else after[:cut] + "\u00a0"
        after = after[:cut]
    elif at_after and after is not None:
        start, after = after, None
    base = folder + "/"
    # after is never below base: the bucket's own folder (key base) is the bucket, not a key in it
    answer = await ctx.services.leader.rpc_scan(prefix=base + prefix, after=base + (after or ""),
                                                start=base + start if start else None,
                                                limit=limit, delimiter=delimiter or None,
                                                readable=_readable(ctx, folder), history=history)
    items: list[tuple[str, dict | None]] = []
    for item in answer["items"]:
        if item.get("prefix"):
            items.append((item["key"][len(base):], None))
        else:
            items.append((item["key"][len(base):], item))
    last = answer.get("next")
    return Page(items, bool(answer.get("truncated")), last[len(base):] if last else None)


_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f]")


def _unstorable(text: str) -> int | None:
    """Where ``text`` has a character no RingFS path holds (a control character), or None."""
    match = _UNSTORABLE.search(text)
    return None if match is None else match.start()


def _contents(parent, ctx: S3Request, key: str, entry: dict, encode, with_owner: bool) -> None:
    contents = xml.add(parent, "Contents")
    if entry.get("folder"):
        etag, size, when = EMPTY_MD5, 0, entry.get("created_at") or 0.0
    else:
        etag = entry.get("etag") or entry["sha256"]
        size, when = entry["size"], entry.get("committed_at") or entry["created_at"]
    xml.add_all(contents, [("Key", encode(key)), ("LastModified", xml.iso_time(when)), ("ETag", f'"{etag}"'),
                           ("Size", size), ("StorageClass", "STANDARD")])
    if with_owner:
        owner(contents, ctx)


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid_argument("The continuation token provided is incorrect", "continuation-token",
                               token) from None


async def common_parameters(ctx: S3Request):
    """What both versions of ListObjects (and ListObjectVersions) take alike: ``(encode, prefix, delimiter, max_keys)``."""
    await ctx.require_bucket()
    return encoder_of(ctx), ctx.query("prefix") or "", ctx.query("delimiter") or None, max_keys_of(ctx.query("max-keys"))


async def list_objects_v2(ctx: S3Request) -> Response:
    encode, prefix, delimiter, max_keys = await common_parameters(ctx)
    token = ctx.query("continuation-token")
    start_after = ctx.query("start-after")
    after = _untoken(token) if token is not None else start_after
    page = await scan_page(ctx, prefix, delimiter, after, max_keys)
    root = xml.document("ListBucketResult")
    xml.add_all(root, [("Name", ctx.bucket), ("Prefix", encode(prefix)),
                       ("Delimiter", encode(delimiter) if delimiter else None), ("MaxKeys", max_keys),
                       ("EncodingType", "url" if ctx.query("encoding-type") else None),
                       ("KeyCount", len(page.items)), ("IsTruncated", page.truncated),
                       ("ContinuationToken", token),
                       ("NextContinuationToken", _token(page.last) if page.truncated and page.last else None),
                       ("StartAfter", encode(start_after) if start_after is not None else None)])
    _add_items(root, ctx, page, encode, with_owner=(ctx.query("fetch-owner") or "").lower() == "true")
    return ctx.xml(root)


async def list_objects_v1(ctx: S3Request) -> Response:
    encode, prefix, delimiter, max_keys = await common_parameters(ctx)
    marker = ctx.query("marker") or ""
    page = await scan_page(ctx, prefix, delimiter, marker or None, max_keys)
    root = xml.document("ListBucketResult")
    xml.add_all(root, [("Name", ctx.bucket), ("Prefix", encode(prefix)), ("Marker", encode(marker)),
                       ("NextMarker", encode(page.last) if page.truncated and delimiter and page.last else None),
                       ("MaxKeys", max_keys), ("Delimiter", encode(delimiter) if delimiter else None),
                       ("EncodingType", "url" if ctx.query("encoding-type") else None),
                       ("IsTruncated", page.truncated)])
    _add_items(root, ctx, page, encode, with_owner=True)
    return ctx.xml(root)


def _add_items(root, ctx: S3Request, page: Page, encode, with_owner: bool) -> None:
    for key, entry in page.items:
        if entry is not None:
            _contents(root, ctx, key, entry, encode, with_owner)
    for key, entry in page.items:
        if entry is None:
            xml.add(xml.add(root, "CommonPrefixes"), "Prefix", encode(key))
