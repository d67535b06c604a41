"""HTTP ``Range: bytes=...`` parsing (RFC 9110 §14.1.2), single ranges only."""

from __future__ import annotations

from shared.errors import RangeNotSatisfiable


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive byte positions for a ``Range`` header, or None to send the whole file.

    Supports ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n``. A header that is not a single byte range is
    ignored, as RFC 9110 allows. Raises :class:`RangeNotSatisfiable` (416) when the range lies outside a
    ``size``-byte file.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    unsatisfiable = RangeNotSatisfiable(f"range {spec.strip()!r} is outside the file of {size} bytes",
                                        headers={"Content-Range": f"bytes */{size}"})
    try:
        if first_s == "":
            n = int(last_s)
            if n <= 0 or size == 0:
                raise unsatisfiable
            return max(0, size - n), size - 1
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size:
        raise unsatisfiable
    if last < first:
        return None
    return first, min(last, size - 1)
