"""HTTP ``Range: bytes=...`` parsing (RFC 9110 §14.1.2, §14.2), single ranges only.

The grammar (RFC 9110 §14.1.1-14.1.2)::

    Range        = range-unit "=" range-set        ; the unit compared case-insensitively
    range-set    = 1#range-spec
    int-range    = first-pos "-" [ last-pos ]       ; positions are 1*DIGIT, ASCII 0-9
    suffix-range = "-" suffix-length

A header outside it (``bytes=1_0-2_0``, ``bytes=+1-+2``, fullwidth digits, an unknown unit, ``last-pos <
first-pos``), a list of several ranges, or a position past 64 bits is ignored and the whole file is sent:
§14.2 says "a server MAY ignore the Range header field" and that a recipient ignores one it does not
understand. A syntactically valid range that selects nothing is a 416 with ``Content-Range: bytes */size``.
"""

from __future__ import annotations

import re

from shared.errors import RangeNotSatisfiable
from shared.numbers import parse_digits

# One range-spec: optional digits, "-", optional digits ("[0-9]", never "\d", which takes any Unicode digit).
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive byte positions a ``Range`` header selects in a ``size``-byte file, or
    None to send the whole file (no header, or one that is ignored as the module docstring says).

    ``bytes=a-b`` (``b`` past the end is cut to the last byte), ``bytes=a-`` and ``bytes=-n`` (the last
    ``n`` bytes). Raises :class:`RangeNotSatisfiable` (416, with ``Content-Range: bytes */size``) when
    ``a`` is at or past the end of the file or ``n`` is 0 (RFC 9110 §14.1.2, §15.5.17)."""
    if not header:
        return None
    unit, eq, spec = header.strip(" \t").partition("=")
    if not eq or unit.lower() != "bytes":
        return None
    spec = spec.strip(" \t")
    match = _SPEC.fullmatch(spec)
    if match is None:
        return None  # not one range-spec: garbage, signs, '_', non-ASCII digits, or a list of ranges
    first_s, last_s = match.groups()
    unsatisfiable = RangeNotSatisfiable(f"range {spec!r} is outside the file of {size} bytes",
                                        headers={"Content-Range": f"bytes */{size}"})
    if first_s == "":
        suffix = parse_digits(last_s) if last_s else None
        if suffix is None:
            return None  # "bytes=-" or a suffix past 64 bits
        if suffix == 0:
            raise unsatisfiable
        if size == 0:
            return None  # satisfiable (§14.1.2), but an empty file has no byte to name: send it whole
        return max(0, size - suffix), size - 1
    first = parse_digits(first_s)
    last = parse_digits(last_s) if last_s else None
    if first is None or (last_s and (last is None or last < first)):
        return None
    if first >= size:
        raise unsatisfiable
    return first, size - 1 if last is None else min(last, size - 1)
