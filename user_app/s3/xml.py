"""S3's XML documents: answers built with :mod:`xml.etree.ElementTree`, client bodies parsed with
:mod:`defusedxml` (no entity expansion, no external entities: a billion-laughs body is refused).

Every answer is in the ``http://s3.amazonaws.com/doc/2006-03-01/`` namespace as AWS sends it; what clients
send is read by local names, with or without that namespace."""

from __future__ import annotations

import re
from datetime import datetime, timezone
import xml.etree.ElementTree as ET
from collections.abc import Iterable

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from user_app.s3.errors import S3Error

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_TYPE = "application/xml"
# The largest XML body a client may send (DeleteObjects with 1,000 keys of 1,024 bytes fits).
MAX_XML_BODY = 2 * 1024 * 1024


def document(root: str) -> ET.Element:
    """A new answer document ``<root xmlns="...s3 namespace...">``."""
    return ET.Element(root, xmlns=S3_NS)


# What XML 1.0 cannot carry (§2.2 Char): control characters but tab, LF and CR; surrogates; U+FFFE/U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def add(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    """Append ``<tag>text</tag>`` (``True``/``False`` as ``true``/``false``; no text for None). A character
    XML cannot hold (a control character a client put in a refused key) is sent as U+FFFD."""
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = _NOT_XML.sub("\ufffd", ("true" if text else "false") if isinstance(text, bool) else str(text))
    return child


def add_all(parent: ET.Element, fields: Iterable[tuple[str, object | None]]) -> ET.Element:
    """Append each ``(tag, text)`` whose text is not None; returns ``parent``."""
    for tag, text in fields:
        if text is not None:
            add(parent, tag, text)
    return parent


def iso_time(ts: float) -> str:
    """``2026-12-03T10:00:00.000Z``: the time format of S3's XML documents (``ts`` UNIX seconds)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def to_bytes(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def malformed(message: str = "The XML you provided was not well-formed or did not validate against our "
                             "published schema.") -> S3Error:
    return S3Error("MalformedXML", message, 400)


def parse(body: bytes, root: str) -> ET.Element:
    """The client document ``body`` whose root element is ``root``. Raises :class:`S3Error`
    ``MalformedXML`` (400) for anything else: not XML, entities, DTDs, another root."""
    try:
        element = SafeET.fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError):
        raise malformed() from None
    if local_name(element.tag) != root:
        raise malformed(f"expected a <{root}> document, got <{local_name(element.tag)}>")
    return element


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def children(element: ET.Element, name: str) -> list[ET.Element]:
    """The direct children of ``element`` named ``name`` (any namespace)."""
    return [c for c in element if local_name(c.tag) == name]


def child_text(element: ET.Element, name: str) -> str | None:
    """The text of the first direct child named ``name`` (``""`` when empty), or None when absent."""
    found = children(element, name)
    return None if not found else (found[0].text or "")
