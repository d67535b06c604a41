"""WebDAV dead properties (RFC 4918 §4: what PROPPATCH sets and PROPFIND answers), kept in the leader's
SQL so that every user app serves the same ones (``user_app/dav/properties.py`` is WsgiDAV's property
manager over these calls).

A property belongs to a path (``""`` the root), whatever is there: a file keeps its properties across its
versions, as a WebDAV resource does across PUTs. The DAV layer removes them when it deletes the resource
and moves or copies them with it; a rename through the user API leaves them at the old path.
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select

from leader.models import DavProperty
from leader.namespace import under
from leader.store import Store
from shared.errors import BadRequest

P = DavProperty.__table__.c
# Bounds of one request: properties of a path set at once, a name (Clark notation), a value (XML text).
MAX_PROPERTIES_SET = 1024
MAX_NAME_CHARS = 1024
MAX_VALUE_CHARS = 64 * 1024
MAX_PATHS = 1024


def _check(name: str, value: str | None = None) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise BadRequest(f"a property name is 1 to {MAX_NAME_CHARS} characters")
    if value is not None and (not isinstance(value, str) or len(value) > MAX_VALUE_CHARS):
        raise BadRequest(f"a property value is XML text of at most {MAX_VALUE_CHARS} characters")


def _children_of(folder: str):
    """Paths directly in ``folder`` or below it (the caller keeps the direct ones)."""
    return under(folder, P.path)


async def properties(store: Store, paths: list[str], children_of: str | None = None) -> dict[str, dict[str, str]]:
    """``{path: {name: value}}`` of ``paths`` and, with ``children_of``, of every path directly in that
    folder (a PROPFIND of depth 1 asks for them all at once); paths without properties are left out."""
    if len(paths) > MAX_PATHS:
        raise BadRequest(f"at most {MAX_PATHS} paths at once")
    conditions = [P.path.in_(paths)] if paths else []
    if children_of is not None:
        conditions.append(_children_of(children_of))
    if not conditions:
        return {}
    out: dict[str, dict[str, str]] = {}
    asked = set(paths)
    base = children_of + "/" if children_of else ""
    async with store.read_conn() as conn:
        for row in await conn.execute(select(P.path, P.name, P.value).where(or_(*conditions))):
            direct = children_of is not None and row.path.startswith(base) and "/" not in row.path[len(base):]
            if row.path in asked or direct:
                out.setdefault(row.path, {})[row.name] = row.value
    return out


async def patch(store: Store, path: str, set_: dict[str, str], remove: list[str]) -> None:
    """Set and remove properties of ``path`` in one transaction (removing one that is not there is no
    error)."""
    if len(set_) + len(remove) > MAX_PROPERTIES_SET:
        raise BadRequest(f"at most {MAX_PROPERTIES_SET} properties at once")
    for name, value in set_.items():
        _check(name, value)
    for name in remove:
        _check(name)
    async with store.write_conn() as conn:
        names = [*set_, *remove]
        if names:
            await conn.execute(delete(DavProperty).where(P.path == path, P.name.in_(names)))
        if set_:
            await conn.execute(DavProperty.__table__.insert(),
                               [{"path": path, "name": n, "value": v} for n, v in set_.items()])


async def remove_all(store: Store, path: str, below: bool) -> None:
    """Drop the properties of ``path`` (and, with ``below``, of every path below it)."""
    condition = P.path == path if not below else or_(P.path == path, _children_of(path))
    async with store.write_conn() as conn:
        await conn.execute(delete(DavProperty).where(condition))


async def move(store: Store, src: str, dst: str, copy: bool, below: bool) -> None:
    """Give ``dst`` the properties of ``src`` (its own are replaced), and with ``below`` every path below
    ``src`` its counterpart below ``dst``; ``copy`` keeps the source's, else they move."""
    if src == dst:
        return
    async with store.write_conn() as conn:
        await move_within(conn, src, dst, copy, below)


async def move_within(conn, src: str, dst: str, copy: bool, below: bool) -> None:
    """:func:`move` inside a transaction the caller holds (``conn``: a connection or an ORM session), as
    the leader's rename does, so that a file's properties move with it whichever API renamed it."""
    rows = (await conn.execute(select(P.path, P.name, P.value).where(
        or_(P.path == src, _children_of(src)) if below else P.path == src))).all()
    rows = [r for r in rows if r.path == src or r.path.startswith(src + "/")]
    moved = [{"path": dst + r.path[len(src):], "name": r.name, "value": r.value} for r in rows]
    targets = sorted({m["path"] for m in moved} | {dst})
    await conn.execute(delete(DavProperty).where(P.path.in_(targets)))
    if not copy:
        await conn.execute(delete(DavProperty).where(or_(P.path == src, _children_of(src)) if below
                                                     else P.path == src))
    if moved:
        await conn.execute(DavProperty.__table__.insert(), moved)
