"""What a folder page shows of a listing: filtered by name, sorted, one page at a time.

The leader answers a folder's direct listing whole (``GET /list``, about 0.1 s for 10,000 entries);
the page sorts and filters it here and sends ``PAGE_SIZE`` rows at a time, with a "load more" link for
the next ones (as SeaweedFS's filer page does). Folders always come before files.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import BadRequest

PAGE_SIZE = 200
MAX_PAGE_SIZE = 2000
SORT_KEYS = ("name", "size", "date")
ORDERS = ("asc", "desc")


@dataclass(frozen=True)
class ListingQuery:
    """The browse page's query string: ``sort`` (name, size, date), ``order`` (asc, desc), ``q`` (a
    case-insensitive substring of the name), ``offset`` and ``limit`` (entries)."""

    sort: str = "name"
    order: str = "asc"
    q: str = ""
    offset: int = 0
    limit: int = PAGE_SIZE

    @classmethod
    def parse(cls, params) -> "ListingQuery":
        """From a query-parameter mapping. Raises :class:`BadRequest` for an unknown sort or order, or a
        bad number."""
        sort, order = params.get("sort") or "name", params.get("order") or "asc"
        if sort not in SORT_KEYS:
            raise BadRequest(f"sort must be one of {', '.join(SORT_KEYS)}, got {sort[:40]!r}")
        if order not in ORDERS:
            raise BadRequest(f"order must be asc or desc, got {order[:40]!r}")
        return cls(sort, order, (params.get("q") or "")[:256], _count("offset", params.get("offset"), 0, 10**9),
                   _count("limit", params.get("limit"), 1, MAX_PAGE_SIZE, PAGE_SIZE))

    def with_(self, **changes) -> dict[str, str]:
        """This query with ``changes``, as parameters for a link (defaults left out)."""
        values = {"sort": self.sort, "order": self.order, "q": self.q, "offset": self.offset, "limit": self.limit,
                  **changes}
        defaults = {"sort": "name", "order": "asc", "q": "", "offset": 0, "limit": PAGE_SIZE}
        return {k: str(v) for k, v in values.items() if v != defaults[k]}


def _count(name: str, raw: str | None, minimum: int, maximum: int, default: int = 0) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise BadRequest(f"{name} must be a whole number from {minimum} to {maximum}, got {raw[:40]!r}")
    return int(raw)


def _modified(entry: dict) -> float:
    return entry.get("committed_at") or entry.get("created_at") or 0.0


def arrange(entries: list[dict], query: ListingQuery) -> tuple[list[dict], int]:
    """``(the page of entries to show, how many match the filter)``: folders first, then files, each
    group in the query's order (ties by name)."""
    needle = query.q.casefold()
    matching = [e for e in entries if needle in e["name"].casefold()] if needle else list(entries)
    key = {"name": lambda e: e["name"].casefold(),
           "size": lambda e: (e.get("size") or 0, e["name"].casefold()),
           "date": lambda e: (_modified(e), e["name"].casefold())}[query.sort]
    reverse = query.order == "desc"
    dirs = sorted((e for e in matching if e["type"] == "dir"), key=key, reverse=reverse)
    files = sorted((e for e in matching if e["type"] != "dir"), key=key, reverse=reverse)
    ordered = dirs + files
    return ordered[query.offset:query.offset + query.limit], len(ordered)
