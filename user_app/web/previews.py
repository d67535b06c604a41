"""What the file page shows of a file: the kind of preview its type allows, and for text its first bytes.

* ``image``, ``video``, ``audio``: the browser loads ``/web/file/...`` itself (video and audio seek with
  ``Range`` requests); ``pdf``: in the browser's own viewer, in a frame.
* ``markdown``: rendered on the server by markdown-it-py with raw HTML off (CommonMark), so a document
  cannot inject markup or scripts into the page; ``text``: shown as it is. Both read at most
  ``TEXT_PREVIEW_BYTES`` of the file.
* anything else: no preview, only the download.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

from markdown_it import MarkdownIt

from shared.protocol.models import VersionInfo
from user_app.reader import ChunkReader

TEXT_PREVIEW_BYTES = 256 * 1024
MARKDOWN_SUFFIXES = (".md", ".markdown")
TEXT_TYPES = ("application/json", "application/xml", "application/x-yaml", "application/yaml",
              "application/javascript", "application/x-sh", "application/toml")
TEXT_SUFFIXES = (".txt", ".log", ".csv", ".tsv", ".ini", ".cfg", ".conf", ".yaml", ".yml", ".toml", ".py", ".sh",
                 ".rs", ".go", ".c", ".h", ".js", ".ts", ".css", ".sql", ".rst")
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False})


@dataclass(frozen=True)
class Preview:
    """``kind``: image, video, audio, pdf, markdown, text or none; ``html`` (markdown, safe) or ``text``
    for the text kinds; ``truncated`` when only the first ``TEXT_PREVIEW_BYTES`` are shown."""

    kind: str
    media_type: str
    html: str = ""
    text: str = ""
    truncated: bool = False


def media_type_of(path: str, stored: str | None = None) -> str:
    """The file's media type: the one stored with it (S3 Content-Type), else guessed from its name."""
    return stored or mimetypes.guess_type(path)[0] or "application/octet-stream"


def kind_of(path: str, media_type: str) -> str:
    lower = path.lower()
    major = media_type.split("/", 1)[0]
    if lower.endswith(MARKDOWN_SUFFIXES) or media_type == "text/markdown":
        return "markdown"
    if major in ("image", "video", "audio"):
        return major
    if media_type == "application/pdf":
        return "pdf"
    if major == "text" or media_type in TEXT_TYPES or lower.endswith(TEXT_SUFFIXES):
        return "text"
    return "none"


async def preview(reader: ChunkReader, info: VersionInfo) -> Preview:
    """The preview of version ``info``. Raises :class:`Unavailable` when a text file's first chunks have
    no reachable copy."""
    media_type = media_type_of(info.path, info.content_type)
    kind = kind_of(info.path, media_type)
    if kind not in ("markdown", "text"):
        return Preview(kind, media_type)
    head = await _head(reader, info)
    text = head.decode("utf-8", errors="replace")
    truncated = info.size > len(head)
    if kind == "markdown":
        return Preview(kind, media_type, html=_markdown.render(text), truncated=truncated)
    return Preview(kind, media_type, text=text, truncated=truncated)


async def _head(reader: ChunkReader, info: VersionInfo) -> bytes:
    if info.size == 0:
        return b""
    view = await reader.open(info.path, info.version)
    out = bytearray()
    async for block in reader.stream(view, 0, min(info.size, TEXT_PREVIEW_BYTES) - 1):
        out += block
    return bytes(out)
