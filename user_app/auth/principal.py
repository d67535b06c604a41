"""Who is asking and what they may do: an access key's grants, checked against paths (README "Security").

A key holds grants ``{"prefix", "access": "read" | "write"}``; ``write`` includes ``read``. A grant covers
every path that starts with its prefix, a plain string prefix as S3 policies have it (``projects/acme/``
covers ``projects/acme/q3.pdf``; end a folder's prefix with ``/`` so it does not also cover
``projects/acme-other/``). ``admin`` adds the cluster's own views (``/cluster``, ``/fsck``, the whole trash)
and key management; it grants no data by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import Forbidden
from shared.protocol.models import AccessKeyInfo, Grant


@dataclass(frozen=True)
class Principal:
    """An authenticated access key."""

    access_key: str
    name: str
    admin: bool
    read_prefixes: tuple[str, ...]  # every grant (write includes read)
    write_prefixes: tuple[str, ...]

    @classmethod
    def of(cls, key: AccessKeyInfo) -> "Principal":
        return cls(key.access_key, key.name, key.admin, tuple(g.prefix for g in key.grants),
                   tuple(g.prefix for g in key.grants if g.access == "write"))

    @property
    def grants(self) -> list[Grant]:
        writes = set(self.write_prefixes)
        return [Grant(prefix=p, access="write" if p in writes else "read") for p in self.read_prefixes]

    def may_read(self, path: str) -> bool:
        return any(path.startswith(p) for p in self.read_prefixes)

    def may_write(self, path: str) -> bool:
        return any(path.startswith(p) for p in self.write_prefixes)

    def may_write_tree(self, path: str) -> bool:
        """Whether the key may write ``path`` and everything below it (a folder's rename or move)."""
        return self.may_write(path + "/") and self.may_write(path)

    def reads_anything_under(self, folder: str) -> bool:
        """Whether some path in ``folder`` (``""``: the root) is readable: a grant covers the folder, or
        lies inside it."""
        base = folder + "/" if folder else ""
        return any(base.startswith(p) or p.startswith(base) for p in self.read_prefixes)

    def writes_anything_under(self, folder: str) -> bool:
        """Whether some path in ``folder`` (``""``: the root) is writable (what the web page's upload and
        new-folder controls need; each write is still checked on its own path)."""
        base = folder + "/" if folder else ""
        return any(base.startswith(p) or p.startswith(base) for p in self.write_prefixes)

    def check_read(self, path: str) -> None:
        if not self.may_read(path):
            raise Forbidden(f"access key {self.access_key} may not read {path!r}")

    def check_write(self, path: str) -> None:
        if not self.may_write(path):
            raise Forbidden(f"access key {self.access_key} may not write {path!r}")

    def check_write_tree(self, path: str) -> None:
        """Raises :class:`Forbidden` unless the key may write ``path`` and everything below it."""
        if not self.may_write_tree(path):
            raise Forbidden(f"access key {self.access_key} may not write {path!r} and everything below it")

    def check_admin(self) -> None:
        if not self.admin:
            raise Forbidden(f"access key {self.access_key} is not an admin key")
