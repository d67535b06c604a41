"""Validation and splitting of RingFS paths.

A path is UTF-8, ``/``-separated, at most ``MAX_PATH_BYTES`` bytes, with no empty, ``.`` or ``..``
segment and no NUL or control character. A leading ``/`` is accepted and dropped, so ``/a/b`` and
``a/b`` name the same file. Folders are implied by file paths (as in GFS §2.3's flat namespace).
"""

from __future__ import annotations

from shared.errors import BadRequest

MAX_PATH_BYTES = 1024


def normalize_path(raw: str) -> str:
    """Return the canonical form of a file path (no leading ``/``). Raises :class:`BadRequest` saying
    what is wrong."""
    if raw is None or raw.strip("/") == "":
        raise BadRequest("path is empty")
    path = raw[1:] if raw.startswith("/") else raw
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadRequest(f"path is longer than {MAX_PATH_BYTES} bytes")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("path is not valid UTF-8") from None
    for ch in path:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise BadRequest(f"path contains control character U+{ord(ch):04X}")
    for segment in path.split("/"):
        if segment == "":
            raise BadRequest("path has an empty segment ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise BadRequest(f"path has a {segment!r} segment")
    return path


def normalize_folder(raw: str | None) -> str:
    """Canonical folder: ``""`` for the root, else a normalized path (a trailing ``/`` is allowed)."""
    if raw is None or raw.strip("/") == "":
        return ""
    return normalize_path(raw.rstrip("/"))


def parent_of(path: str) -> str:
    """The folder holding ``path`` (``""`` for the root)."""
    return path.rpartition("/")[0]
