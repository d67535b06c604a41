"""Validation and splitting of RingFS paths.

A path is UTF-8, ``/``-separated, at most ``MAX_PATH_BYTES`` bytes, with no empty, ``.`` or ``..``
segment. A leading ``/`` is accepted and dropped, so ``/a/b`` and ``a/b`` name the same file. Folders are
implied by file paths (as in GFS §2.3's flat namespace), and one name is never both: a file ``a`` and a
file ``a/b`` cannot both be live (the leader refuses the second with 409).

Paths are normalised to Unicode NFC (UAX #15) at the edge, so ``café`` typed as one code point (NFC) or as
``e`` plus a combining accent (NFD, what macOS file names use) name the same file, as on APFS and in
Git's ``core.precomposeUnicode``. Refused with 400: the C0 and C1 control characters (U+0000-U+001F,
U+007F-U+009F) and the bidirectional embedding, override and isolate characters (U+202A-U+202E,
U+2066-U+2069), which make a name display as something else (``\u202etxt.exe`` shows as ``exe.txt``;
CVE-2021-42574 "Trojan Source" is the same trick in source code).
"""

from __future__ import annotations

import unicodedata

from shared.errors import BadRequest

MAX_PATH_BYTES = 1024


def _refused(ch: str) -> str | None:
    """What is wrong with character ``ch`` in a path, or None if it is allowed."""
    cp = ord(ch)
    if cp < 0x20 or 0x7F <= cp <= 0x9F:
        return f"control character U+{cp:04X}"
    if 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069:
        return f"bidirectional formatting character U+{cp:04X} ({unicodedata.name(ch)})"
    return None


def normalize_path(raw: str) -> str:
    """Return the canonical form of a file path: NFC, no leading ``/``.

    Raises :class:`BadRequest` (400) saying what is wrong: empty, not UTF-8, a refused character, longer
    than ``MAX_PATH_BYTES`` (counted after NFC), an empty, ``.`` or ``..`` segment."""
    if raw is None or raw.strip("/") == "":
        raise BadRequest("path is empty")
    path = raw[1:] if raw.startswith("/") else raw
    if len(path.encode("utf-8", "surrogatepass")) > 4 * MAX_PATH_BYTES:  # before NFC's work on it
        raise BadRequest(f"path is longer than {MAX_PATH_BYTES} bytes")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("path is not valid UTF-8") from None
    for ch in path:
        problem = _refused(ch)
        if problem is not None:
            raise BadRequest(f"path contains {problem}")
    path = unicodedata.normalize("NFC", path)
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise BadRequest(f"path is longer than {MAX_PATH_BYTES} bytes")
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


def ancestors_of(path: str) -> list[str]:
    """Every folder above the normalized ``path``, outermost first: ``"a/b/c"`` -> ``["a", "a/b"]``."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
