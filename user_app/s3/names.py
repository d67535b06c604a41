"""Bucket names and object keys as RingFS paths: bucket ``b`` is the top-level folder ``b``, key ``k`` of it
the path ``b/k``, and a key ending in ``/`` (a folder marker, as rclone and the consoles make) the explicit
folder ``b/k`` without its ``/``.

S3 allows keys that a RingFS path cannot be; those are refused with ``InvalidArgument`` (an empty
segment, as in ``a//b`` or a leading ``/``; a ``.`` or ``..`` segment; a control character) or
``KeyTooLongError`` (a path over ``MAX_PATH_BYTES``), never stored under another name. Keys are normalized
to NFC as every RingFS path is (``shared/paths.py``): a key sent in NFD is listed in NFC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import BadRequest
from shared.paths import MAX_PATH_BYTES, normalize_path
from user_app.s3.errors import S3Error, invalid_argument

# S3's rules for a new bucket ("Bucket naming rules"): 3-63 characters of a-z 0-9 . -, starting and ending
# with a letter or digit, no "..", not shaped like an IP address.
_NEW_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
MAX_KEY_BYTES = 1024  # S3's own limit on a key
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"  # a folder marker's ETag: the MD5 of no bytes


def invalid_bucket_name(bucket: str) -> S3Error:
    return S3Error("InvalidBucketName", "The specified bucket is not valid.", 400, BucketName=bucket)


def check_new_bucket_name(bucket: str) -> None:
    """Raise ``InvalidBucketName`` unless ``bucket`` follows S3's naming rules (CreateBucket)."""
    if not _NEW_BUCKET_RE.fullmatch(bucket) or ".." in bucket or _IP_RE.fullmatch(bucket):
        raise invalid_bucket_name(bucket)


def bucket_folder(bucket: str) -> str:
    """The top-level folder of an existing bucket: any single RingFS path segment (a folder made with
    ``ringfs put`` may have a name CreateBucket would refuse). Raises ``InvalidBucketName``."""
    if "/" in bucket:
        raise invalid_bucket_name(bucket)
    try:
        return normalize_path(bucket)
    except BadRequest:
        raise invalid_bucket_name(bucket) from None


@dataclass(frozen=True)
class ObjectName:
    """Where key ``key`` of ``bucket`` lives: ``path`` (a file, or for a folder marker the folder) and
    whether it is a folder marker."""

    bucket: str
    key: str
    path: str
    folder: bool


def object_name(bucket: str, key: str) -> ObjectName:
    """Raises ``KeyTooLongError`` or ``InvalidArgument`` (see the module docstring)."""
    if not key:
        raise invalid_argument("An object key must not be empty.", "key", key)
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", "Your key is too long", 400)
    folder = key.endswith("/")
    body = key[:-1] if folder else key
    for segment in body.split("/"):
        if segment in ("", ".", ".."):
            what = "an empty segment ('//', or a leading '/')" if segment == "" else f"a {segment!r} segment"
            raise invalid_argument(f"RingFS cannot store a key with {what}: {key[:200]!r}", "key", key)
    raw = f"{bucket}/{body}"
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise S3Error("KeyTooLongError", f"Your key is too long: bucket and key must fit in {MAX_PATH_BYTES} "
                      "bytes", 400)
    try:
        path = normalize_path(raw)
    except BadRequest as exc:
        raise invalid_argument(f"RingFS cannot store this key: {exc.message}", "key", key) from None
    return ObjectName(bucket, key, path, folder)


def key_of(bucket: str, path: str, folder: bool = False) -> str:
    """The key of RingFS ``path`` in ``bucket`` (a folder's key ends in ``/``)."""
    key = path[len(bucket) + 1:]
    return key + "/" if folder else key
