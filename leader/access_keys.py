"""Access keys in the leader's SQL: create, list, look up (with the secret, for cluster members that check
requests signed with it), delete, and the root key's bootstrap (MinIO's ``MINIO_ROOT_USER`` /
``MINIO_ROOT_PASSWORD``; README "Security").

A key is an access key id (20 characters ``[A-Z0-9]``, as S3's) and a secret key (40 characters), with
grants ``[{"prefix","access"}]`` and an admin flag. The secret is sealed with the cluster secret
(``shared/auth/sealing.py``), never stored in plain text.
"""

from __future__ import annotations

import logging
import secrets
import time

import orjson
from sqlalchemy import delete, func, select

from leader.models import AccessKey
from leader.store import Store
from shared.auth.key_material import new_access_key, new_secret_key
from shared.auth.sealing import Sealer
from shared.errors import Conflict, NotFound
from shared.protocol.models import AccessKeyInfo, AccessKeySecret, Grant, NewAccessKey

log = logging.getLogger("ringfs.leader.keys")

# The root key's grants: everything, writable; and admin.
ROOT_GRANTS = [Grant(prefix="", access="write")]


class AccessKeys:
    """The access keys of one leader, in ``store``, sealed by ``sealer``."""

    def __init__(self, store: Store, sealer: Sealer) -> None:
        self.store = store
        self.sealer = sealer

    def _info(self, row: AccessKey) -> AccessKeyInfo:
        return AccessKeyInfo(access_key=row.access_key, name=row.name, admin=row.admin, created_at=row.created_at,
                             grants=[Grant.model_validate(g) for g in orjson.loads(row.grants)])

    def _with_secret(self, row: AccessKey) -> AccessKeySecret:
        return AccessKeySecret(**self._info(row).model_dump(), secret_key=self.sealer.open(row.secret_sealed).decode())

    async def create(self, new: NewAccessKey, access_key: str | None = None,
                     secret_key: str | None = None) -> AccessKeySecret:
        """Store a new key (generated id and secret unless given); the key with its secret. Raises
        :class:`Conflict` when the id exists."""
        access_key, secret_key = access_key or new_access_key(), secret_key or new_secret_key()
        async with self.store.write() as session:
            if await session.get(AccessKey, access_key) is not None:
                raise Conflict(f"access key {access_key} exists")
            row = AccessKey(access_key=access_key, name=new.name, admin=new.admin, created_at=time.time(),
                            grants=orjson.dumps([g.model_dump() for g in new.grants]).decode(),
                            secret_sealed=self.sealer.seal(secret_key.encode()))
            session.add(row)
        return AccessKeySecret(**self._info(row).model_dump(), secret_key=secret_key)

    async def list(self) -> list[AccessKeyInfo]:
        """Every key, without secrets, by id."""
        async with self.store.read() as session:
            rows = (await session.execute(select(AccessKey).order_by(AccessKey.access_key))).scalars().all()
        return [self._info(r) for r in rows]

    async def get(self, access_key: str) -> AccessKeySecret:
        """The key with its secret. Raises :class:`NotFound`."""
        async with self.store.read() as session:
            row = await session.get(AccessKey, access_key)
        if row is None:
            raise NotFound(f"no access key {access_key}")
        return self._with_secret(row)

    async def delete(self, access_key: str) -> None:
        """Raises :class:`NotFound`, or :class:`Conflict` for the last admin key (nobody could manage the
        keys any more)."""
        async with self.store.write() as session:
            row = await session.get(AccessKey, access_key)
            if row is None:
                raise NotFound(f"no access key {access_key}")
            if row.admin:
                admins = (await session.execute(select(func.count()).where(AccessKey.admin.is_(True)))).scalar_one()
                if admins <= 1:
                    raise Conflict(f"{access_key} is the last admin key; create another admin key first")
            await session.execute(delete(AccessKey).where(AccessKey.access_key == access_key))

    async def ensure_root(self, access_key: str, secret_key: str) -> None:
        """Make sure an admin key ``access_key`` with ``secret_key`` and every grant exists (the leader's
        ``ROOT_ACCESS_KEY`` / ``ROOT_SECRET_KEY``); a changed secret replaces the stored one."""
        async with self.store.write() as session:
            row = await session.get(AccessKey, access_key)
            grants = orjson.dumps([g.model_dump() for g in ROOT_GRANTS]).decode()
            if row is None:
                session.add(AccessKey(access_key=access_key, name="root", admin=True, created_at=time.time(),
                                      grants=grants, secret_sealed=self.sealer.seal(secret_key.encode())))
                log.info("root access key %s created", access_key)
                return
            if not secrets.compare_digest(self.sealer.open(row.secret_sealed), secret_key.encode()):
                row.secret_sealed = self.sealer.seal(secret_key.encode())
                log.info("root access key %s: secret replaced from ROOT_SECRET_KEY", access_key)
            row.admin, row.grants = True, grants

    async def reseal(self) -> int:
        """Seal every stored secret under the current cluster secret (after a rotation); how many rows."""
        async with self.store.write() as session:
            rows = (await session.execute(select(AccessKey))).scalars().all()
            for row in rows:
                row.secret_sealed = self.sealer.reseal(row.secret_sealed)
        return len(rows)
