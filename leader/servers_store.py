"""SQL for ring membership: chunk servers, their virtual nodes and the ring epoch."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leader.models import ChunkServer, RingState, VirtualNode
from shared.ring import ServerState


async def bump_epoch(session: AsyncSession) -> int:
    """Increment the ring epoch inside the caller's transaction; return the new epoch."""
    state = await session.get(RingState, 1, with_for_update=True)
    state.epoch += 1
    return state.epoch


async def get_server(session: AsyncSession, server_id: str) -> ChunkServer | None:
    return await session.get(ChunkServer, server_id, with_for_update=True)


async def live_servers_at(session: AsyncSession, url: str, other_than: str) -> list[ChunkServer]:
    """Non-removed servers registered at ``url`` other than ``other_than``."""
    q = select(ChunkServer).where(ChunkServer.url == url, ChunkServer.server_id != other_than,
                                  ChunkServer.state != ServerState.REMOVED.value)
    return list((await session.execute(q)).scalars())


def add_server(session: AsyncSession, server_id: str, url: str, capacity_bytes: int, positions: list[int],
               now: float) -> ChunkServer:
    """Insert a new healthy server and its virtual nodes (``positions`` in index order); the new row."""
    row = ChunkServer(server_id=server_id, url=url, capacity_bytes=capacity_bytes, state=ServerState.HEALTHY.value,
                      missed_checks=0, registered_at=now, last_seen_at=now, joined_at=now)
    session.add(row)
    session.add_all([VirtualNode(server_id=server_id, idx=i, position=p) for i, p in enumerate(positions)])
    return row


async def snapshot(session: AsyncSession) -> tuple[int, list[ChunkServer], list[tuple[int, str]]]:
    """``(epoch, every server ordered by id, [(position, server_id)] of non-removed servers by
    position)``: the data of a :class:`shared.protocol.RingView`."""
    epoch = (await session.execute(select(RingState.epoch).where(RingState.id == 1))).scalar_one()
    servers = list((await session.execute(select(ChunkServer).order_by(ChunkServer.server_id))).scalars())
    vnodes = (await session.execute(
        select(VirtualNode.position, VirtualNode.server_id)
        .join(ChunkServer, ChunkServer.server_id == VirtualNode.server_id)
        .where(ChunkServer.state != ServerState.REMOVED.value)
        .order_by(VirtualNode.position, VirtualNode.server_id))).all()
    return epoch, servers, [(p, s) for p, s in vnodes]


async def servers_by_id(session: AsyncSession, ids: list[str]) -> dict[str, ChunkServer]:
    q = select(ChunkServer).where(ChunkServer.server_id.in_(ids)).with_for_update()
    return {s.server_id: s for s in (await session.execute(q)).scalars()}


async def reseal_server_keys(session: AsyncSession, reseal) -> int:
    """Seal every chunk server's key again with ``reseal`` (after a cluster-secret rotation); how many."""
    rows = [r for r in (await session.execute(select(ChunkServer))).scalars() if r.key_sealed is not None]
    for row in rows:
        row.key_sealed = reseal(row.key_sealed)
    return len(rows)
