"""Strict parsing of the numbers RingFS reads as text: query-string parameters and ``Range`` positions.

Python's ``int()`` takes much more than a decimal number: ``"1_0"`` (ten), ``"+5"``, ``" 5 "``, fullwidth
and other Unicode digits (``"１２"``) and numbers of any size. HTTP's numbers are ``1*DIGIT`` with ``DIGIT``
the ASCII characters ``0``-``9`` (RFC 9110 §5.6.1, RFC 5234 Appendix B.1), so that is the one rule here:
one or more ASCII digits, nothing else (no sign, no ``_``, no white space), and a value within 64 bits
(signed, what a SQL ``BIGINT`` holds).
"""

from __future__ import annotations

import re

from shared.errors import BadRequest

MAX_INT64 = 2**63 - 1
# ``[0-9]`` (not ``\d``, which matches every Unicode digit); a bounded length keeps int() cheap, leading
# zeros included.
_DIGITS = re.compile(r"[0-9]{1,64}")


def parse_digits(text: str, maximum: int = MAX_INT64) -> int | None:
    """The value of ``text`` when it is only ASCII digits and at most ``maximum``, else None."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= maximum else None


def parse_uint(name: str, raw: str, *, minimum: int = 0, maximum: int = MAX_INT64) -> int:
    """``raw`` (the text of parameter ``name``) as an integer in ``[minimum, maximum]``.

    Raises :class:`BadRequest` naming ``name`` when ``raw`` is not ASCII digits only or is out of range.
    """
    value = parse_digits(raw, maximum)
    if value is None or value < minimum:
        shown = raw if len(raw) <= 80 else raw[:80] + "..."
        raise BadRequest(f"{name} must be a whole number from {minimum} to {maximum} in ASCII digits, "
                         f"got {shown!r}")
    return value
