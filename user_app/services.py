"""The per-process singletons every request of a user app shares: one RPC transport and its clients, one
ring cache, the coalesced phase calls, one writer, one reader, the multi-file budgets and the verified
access keys."""

from __future__ import annotations

from dataclasses import dataclass

from shared.auth.service_auth import ClusterAuth, client_ssl_context
from shared.config import UserAppSettings
from shared.rpc.chunk_client import ChunkClient
from shared.rpc.leader_client import LeaderClient
from shared.rpc.ring_cache import RingCache
from shared.rpc.transport import Transport
from user_app.auth.key_cache import KeyCache
from user_app.chunk_cache import ChunkCache
from user_app.multi_file import MultiFileLimits
from user_app.phases import PhaseCalls
from user_app.manifest_leases import LeasedManifests
from user_app.reader import ChunkReader
from user_app.writer import WriteCoordinator


@dataclass
class Services:
    """What a user app's routes use. Create it inside the running event loop (the app's lifespan)."""

    transport: Transport
    chunks: ChunkClient
    leader: LeaderClient
    rings: RingCache
    phases: PhaseCalls
    writer: WriteCoordinator
    reader: ChunkReader
    limits: MultiFileLimits
    keys: KeyCache

    @classmethod
    def create(cls, settings: UserAppSettings, auth: ClusterAuth) -> "Services":
        transport = Transport(settings.request_timeout, auth.signer, client_ssl_context(settings))
        chunks = ChunkClient(transport)
        leader = LeaderClient(transport, settings.leaders)
        rings = RingCache(leader, settings.ring_ttl)
        phases = PhaseCalls(chunks, leader)
        return cls(
            transport=transport, chunks=chunks, leader=leader, rings=rings, phases=phases,
            writer=WriteCoordinator(phases, rings, settings.piece_size, settings.pieces_in_flight,
                                    settings.crash_after_phase),
            reader=ChunkReader(chunks, leader, rings, settings.piece_size, settings.pieces_in_flight,
                               ChunkCache(settings.chunk_cache_bytes), settings.chunk_cache_max_file,
                               leases=LeasedManifests(leader, settings.advertise_url)
                               if settings.read_leases and settings.workers == 1 else None),
            limits=MultiFileLimits(),
            keys=KeyCache(leader, settings.key_cache_ttl),
        )

    async def aclose(self) -> None:
        await self.phases.aclose()
        await self.transport.aclose()
