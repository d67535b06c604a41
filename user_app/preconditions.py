"""Conditional requests (RFC 9110 §13) on ``/files/{path}``: parsing ``If-Match``, ``If-None-Match`` and
``If-Modified-Since``, and the evaluation order of §13.2.2 for GET and HEAD.

A file's ETag is its SHA-256 in quotes (``"<64 hex>"``), a strong validator (§8.8.1): equal ETags mean
equal bytes. ``Last-Modified`` is the commit time of the version, to the second (§8.8.2).

On PUT and DELETE, ``If-Match`` is not evaluated here but sent to the leader, which checks it in the
transaction that commits or deletes (``leader/txns.py``, ``leader/namespace.py``), so two writers that
both read ETag ``x`` cannot both replace it (the lost update of §13.1.1).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

from shared.errors import BadRequest, PreconditionFailed
from shared.protocol.models import VersionInfo
from shared.protocol.rules import MAX_IF_MATCH_TAGS, SHA256_RE, if_match_allows

# One member of an entity-tag list (§8.8.3): optional W/, then DQUOTE *etagc DQUOTE, then OWS and a comma
# or the end. etagc is %x21 / %x23-7E / obs-text: any visible character but '"'.
_ETAG = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*(?:,|$)')


class NotModified(Exception):
    """A GET or HEAD whose condition says the client's copy is current: answer 304 (§15.4.5)."""


def parse_etags(name: str, header: str) -> list[tuple[bool, str]] | None:
    """The entity tags of an ``If-Match`` / ``If-None-Match`` value as ``(weak, opaque)`` pairs, or None
    for ``*``. Raises :class:`BadRequest` naming ``name`` for a value that is neither (§13.1.1-2)."""
    value = header.strip(" \t")
    if value == "*":
        return None
    tags: list[tuple[bool, str]] = []
    pos = 0
    while pos < len(value):
        if value[pos] in " \t,":  # empty list members are allowed (§5.6.1)
            pos += 1
            continue
        match = _ETAG.match(value, pos)
        if match is None:
            raise BadRequest(f"{name} must be '*' or a list of entity tags like '\"<sha256>\"', got {header[:200]!r}")
        tags.append((match.group(1) is not None, match.group(2)))
        pos = match.end()
    if not tags:
        raise BadRequest(f"{name} is empty")
    return tags


def if_match_condition(header: str | None) -> str | None:
    """The leader's form of an ``If-Match`` header (``shared.protocol.rules.if_match_allows``): None when
    absent, ``"*"``, or the SHA-256s it lists, comma-separated. Strong comparison (§13.1.1): weak tags
    and tags that are no SHA-256 can match no RingFS file, so a list of only those is answered 412 at
    once. Raises :class:`BadRequest` for a malformed value or more than ``MAX_IF_MATCH_TAGS`` tags."""
    if header is None:
        return None
    tags = parse_etags("If-Match", header)
    if tags is None:
        return "*"
    if len(tags) > MAX_IF_MATCH_TAGS:
        raise BadRequest(f"If-Match lists {len(tags)} entity tags; at most {MAX_IF_MATCH_TAGS} are accepted")
    shas = list(dict.fromkeys(tag for weak, tag in tags if not weak and SHA256_RE.fullmatch(tag)))
    if not shas:
        raise PreconditionFailed(f"If-Match {header[:200]!r} matches no current version (ETags are "
                                 f"strong: '\"<sha256>\"')")
    return ",".join(shas)


def last_modified(info: VersionInfo) -> datetime:
    """When ``info``'s version was committed, to the second, in UTC (the ``Last-Modified`` time)."""
    ts = info.committed_at if info.committed_at is not None else info.created_at
    return datetime.fromtimestamp(int(ts), timezone.utc)


def http_date(moment: datetime) -> str:
    """``moment`` as an IMF-fixdate (§5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return format_datetime(moment, usegmt=True)


def _parse_http_date(value: str) -> datetime | None:
    """An HTTP-date, or None for anything that is not one (§13.1.3: an invalid date is ignored)."""
    if "," in value.split(" ", 1)[-1]:  # more than one member
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def check_read(headers, info: VersionInfo, etag: str | None = None) -> None:
    """Evaluate a GET or HEAD's preconditions against ``info`` in the order of RFC 9110 §13.2.2.

    ``etag`` is the version's entity tag without quotes: its SHA-256 by default (the user API), its S3
    ETag for the S3 API.

    1. ``If-Match``: false (no listed tag is the ETag, strong comparison) -> :class:`PreconditionFailed`.
    2. Else ``If-Unmodified-Since`` (an HTTP-date; anything else is ignored): committed later ->
       :class:`PreconditionFailed`.
    3. ``If-None-Match``: true (``*``, or a listed tag equals the ETag, weak comparison, §13.1.2) ->
       :class:`NotModified`.
    4. Else ``If-Modified-Since`` (an HTTP-date; anything else is ignored): the version was committed no
       later -> :class:`NotModified`.
    ``If-Range`` is not supported, so a ``Range`` then applies as it would unconditionally. Raises
    :class:`BadRequest` for a malformed entity-tag list."""
    etag = info.sha256 if etag is None else etag
    im = headers.get("if-match")
    if im is not None:
        tags = parse_etags("If-Match", im)
        current = None if tags is None else ",".join(t for weak, t in tags if not weak)
        if tags is not None and not if_match_allows(current, etag):
            raise PreconditionFailed(f'If-Match {im[:200]!r} does not match the current ETag "{etag}"')
    else:
        ius = headers.get("if-unmodified-since")
        since = _parse_http_date(ius) if ius is not None else None
        if since is not None and last_modified(info) > since:
            raise PreconditionFailed(f"If-Unmodified-Since {ius[:80]!r}: the version was modified after it")
    inm = headers.get("if-none-match")
    if inm is not None:
        tags = parse_etags("If-None-Match", inm)
        if tags is None or any(tag == etag for _, tag in tags):
            raise NotModified()
        return
    ims = headers.get("if-modified-since")
    if ims is not None:
        since = _parse_http_date(ims)
        if since is not None and last_modified(info) <= since:
            raise NotModified()


def require_if_match(if_match: str, path: str, current_sha256: str | None) -> None:
    """Raise :class:`PreconditionFailed` (412) unless a live version with ``current_sha256`` (None: none)
    satisfies ``if_match`` (:func:`if_match_condition`'s form)."""
    if not if_match_allows(if_match, current_sha256):
        if current_sha256 is None:
            raise PreconditionFailed(f"If-Match failed: {path!r} has no live version")
        raise PreconditionFailed(f'If-Match failed: the live version of {path!r} has ETag "{current_sha256}"')
