"""Ring membership: registration, health checks and the cached ring view.

Registration (docs/protocol.md): a new ``server_id`` gets ``VIRTUAL_NODES`` positions
(:func:`shared.ring.virtual_node_positions`, Dynamo §4.2), stored in SQL so the ring survives a leader
restart, its own key (``shared/auth/server_identity.py``), and the epoch increments. A known id must
prove it holds that key; it then updates its URL and capacity and resets its missed checks; a ``removed``
one returns as a new member (epoch++). A URL held by a *live* member (healthy, its last check passed) is
refused with 409 and that member is not touched; one held by a member that stopped answering is taken
over, the old member marked ``removed`` (its data dir was wiped), epoch++. A URL change also bumps the
epoch, since clients must stop using the old address.

Health checks (the reference design's heartbeat; GFS §4.6 HeartBeat messages): every
``HEALTH_CHECK_INTERVAL`` s, ``GET {url}/healthz`` with a fresh challenge to every non-removed server in
parallel; a check passes only when the answer proves the server's own key. Success resets
``missed_checks``; a miss increments it: 1 .. ``REMOVAL_THRESHOLD - 1`` is ``unhealthy``,
``REMOVAL_THRESHOLD`` is ``removed`` (epoch++).

``GET /ring`` is called by every user app every few seconds, so the serialized ring is cached in memory
and rebuilt only when membership or health state changes; ``ring`` is the same view as a
:class:`shared.ring.Ring` for the leader's own placement questions (fsck).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import orjson

from leader import servers_store
from leader.store import Store
from shared.config import LeaderSettings
from shared.auth.sealing import Sealer
from shared.auth.server_identity import health_proof, new_server_key, proof_matches, registration_proof
from shared.errors import Conflict, Forbidden, RingFSError
from shared.protocol.models import RegistrationResult, RingServer, RingView, ServerRegistration
from shared.ring import Ring, ServerState, virtual_node_positions
from shared.rpc.chunk_client import ChunkClient

log = logging.getLogger("ringfs.leader.membership")


class Membership:
    """The leader's view of the chunk servers. ``ring_json`` / ``servers_json`` are ready-to-send response
    bodies, ``cluster_doc`` is ``GET /cluster``'s (merged with ``last_seen_at``); ``epoch`` is what the
    epoch middleware stamps on every response."""

    def __init__(self, settings: LeaderSettings, store: Store, chunks: ChunkClient, sealer: Sealer | None) -> None:
        self.settings = settings
        self.store = store
        self.chunks = chunks
        self.sealer = sealer  # None only with INSECURE_NO_AUTH: no server keys, no proofs
        self._server_keys: dict[str, bytes] = {}
        self.epoch = 0
        self.ring_json = b"{}"
        self.cluster_doc: dict = {}  # GET /cluster: the ring without its virtual nodes
        self.servers_json = b"[]"
        self.ring = Ring(epoch=0, servers={}, vnodes=[])  # the cached view as placement logic (fsck)
        self._targets: list[tuple[str, str]] = []  # (server_id, url) of non-removed servers
        # When each server last answered a health check or registered (UNIX seconds), kept in memory
        # between rebuilds so that a round that changes nothing costs no JSON (GET /cluster shows it).
        self.last_seen_at: dict[str, float] = {}
        self._removals_held_until = 0.0  # monotonic seconds; see hold_removals
        self._lock = asyncio.Lock()  # serializes membership mutations within this process

    def hold_removals(self, seconds: float) -> None:
        """Remove no server from the ring for ``seconds``: after a takeover (``leader/election.py``) the
        missed checks counted in SQL may be the old leader's, and a new leader must give every server
        ``REMOVAL_THRESHOLD`` full check intervals of its own before it removes one. Servers that miss
        checks are still marked unhealthy."""
        self._removals_held_until = time.monotonic() + seconds

    async def load(self) -> None:
        """Create the epoch row if needed and build the cached ring from SQL (at start-up)."""
        await self.store.ensure_ring_state()
        await self._rebuild()

    async def _rebuild(self) -> None:
        async with self.store.read() as session:
            epoch, servers, vnodes = await servers_store.snapshot(session)
        s = self.settings
        ring_servers = [RingServer(server_id=x.server_id, url=x.url, state=x.state, missed_checks=x.missed_checks,
                                   capacity_bytes=x.capacity_bytes, joined_at=x.joined_at) for x in servers]
        if self.sealer is not None:
            self._server_keys = {x.server_id: self.sealer.open(x.key_sealed) for x in servers if x.key_sealed}
        view = RingView(epoch=epoch, replication_factor=s.replication_factor,
                        min_write_replicas=s.min_write_replicas, chunk_size=s.chunk_size,
                        min_chunk_size=s.min_chunk_size, max_chunk_size=s.max_chunk_size,
                        target_chunks_per_file=s.target_chunks_per_file,
                        streamed_chunk_size=s.streamed_chunk_size, servers=ring_servers, vnodes=vnodes)
        doc = view.model_dump()
        self.ring_json = orjson.dumps(doc)
        self.cluster_doc = {k: v for k, v in doc.items() if k != "vnodes"}
        self.servers_json = orjson.dumps(doc["servers"])
        self._targets = [(x.server_id, x.url) for x in servers if x.state != ServerState.REMOVED]
        self.last_seen_at = {x.server_id: x.last_seen_at for x in servers if x.last_seen_at is not None}
        self.ring = Ring.from_view(view)
        self.epoch = epoch

    async def register(self, reg: ServerRegistration) -> RegistrationResult:
        """Apply a chunk server's registration (see the module docstring); one transaction. Raises
        :class:`Forbidden` (403) when a known id does not prove its key, :class:`Conflict` (409) when the
        URL belongs to another live member."""
        url = reg.advertise_url.rstrip("/")
        now = time.time()
        issued: bytes | None = None
        async with self._lock:
            async with self.store.write() as session:
                row = await servers_store.get_server(session, reg.server_id)
                self._check_identity(row, reg, url)
                bump = False
                for other in await servers_store.live_servers_at(session, url, reg.server_id):
                    if other.state == ServerState.HEALTHY and other.missed_checks == 0:
                        raise Conflict(f"{url} is the address of live chunk server {other.server_id}; "
                                       f"{reg.server_id} cannot register there")
                    log.warning("server %s at %s replaced by %s: marked removed", other.server_id, url, reg.server_id)
                    other.state = ServerState.REMOVED.value
                    bump = True
                if row is None:
                    positions = virtual_node_positions(reg.server_id, self.settings.virtual_nodes)
                    row = servers_store.add_server(session, reg.server_id, url, reg.capacity_bytes, positions, now)
                    log.info("server %s joined at %s", reg.server_id, url)
                    bump = True
                else:
                    if row.state == ServerState.REMOVED or row.url != url:
                        log.info("server %s (re)joined at %s (was %s at %s)", reg.server_id, url, row.state, row.url)
                        bump = True
                    if row.state == ServerState.REMOVED:
                        row.joined_at = now
                    row.url = url
                    row.capacity_bytes = reg.capacity_bytes
                    row.state = ServerState.HEALTHY.value
                    row.missed_checks = 0
                    row.last_seen_at = now
                if row.key_sealed is None and self.sealer is not None:
                    issued = new_server_key()
                    row.key_sealed = self.sealer.seal(issued)
                if bump:
                    await servers_store.bump_epoch(session)
            await self._rebuild()
        return RegistrationResult(server_id=reg.server_id, epoch=self.epoch,
                                  health_check_interval=self.settings.health_check_interval,
                                  server_key=issued.hex() if issued else None)

    def _check_identity(self, row, reg: ServerRegistration, url: str) -> None:
        """A known id with a key must prove it (a member cannot re-register another member's id)."""
        if row is None or row.key_sealed is None or self.sealer is None:
            return
        key = self.sealer.open(row.key_sealed)
        if not proof_matches(registration_proof(key, reg.server_id, url), reg.proof):
            raise Forbidden(f"server id {reg.server_id} is registered with a key this registration does not prove "
                            f"(its DATA_DIR/server_key is missing or from another server)")

    async def _probe(self, server_id: str, url: str) -> bool:
        """One health check: 200 from ``/healthz`` naming the expected id and, unless the cluster runs
        INSECURE_NO_AUTH, proving that id's key on a fresh challenge."""
        challenge = secrets.token_urlsafe(16)
        try:
            answer = await self.chunks.rpc_healthz(url, self.settings.health_check_timeout, challenge)
        except RingFSError:
            return False
        if answer.get("server_id") != server_id:
            return False
        if self.sealer is None:
            return True
        key = self._server_keys.get(server_id)
        return key is not None and proof_matches(health_proof(key, server_id, challenge), answer.get("proof"))

    async def run_health_checks(self) -> None:
        """One round of health checks (the APScheduler job); never raises."""
        try:
            await self._health_round()
        except Exception:
            log.exception("health-check round failed")

    async def _health_round(self) -> None:
        targets = list(self._targets)
        if not targets:
            return
        results = await asyncio.gather(*(self._probe(sid, url) for sid, url in targets))
        now = time.time()
        threshold = self.settings.removal_threshold
        async with self._lock:
            changed = bump = False
            async with self.store.write() as session:
                rows = await servers_store.servers_by_id(session, [sid for sid, _ in targets])
                for (sid, url), ok in zip(targets, results):
                    row = rows.get(sid)
                    if row is None or row.url != url or row.state == ServerState.REMOVED:
                        continue  # re-registered or removed while we were probing
                    if ok:
                        row.last_seen_at = self.last_seen_at[sid] = now
                        if row.missed_checks or row.state != ServerState.HEALTHY:
                            log.info("server %s is healthy again", sid)
                            row.missed_checks, row.state, changed = 0, ServerState.HEALTHY.value, True
                        continue
                    row.missed_checks += 1
                    changed = True
                    if row.missed_checks >= threshold and time.monotonic() >= self._removals_held_until:
                        log.warning("server %s missed %d checks: removed from the ring", sid, row.missed_checks)
                        row.state = ServerState.REMOVED.value
                        bump = True
                    else:
                        log.info("server %s missed %d check(s): unhealthy", sid, row.missed_checks)
                        row.state = ServerState.UNHEALTHY.value
                if bump:
                    await servers_store.bump_epoch(session)
            if changed:
                await self._rebuild()
