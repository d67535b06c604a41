"""Server identity and membership: a stable server id, registration with the leader, and re-registration
when the leader's health checks stop arriving.

Reference design: "Unhealthy chunk servers attempt to reconnect if they miss health checks". The leader
removes a server from the ring after 5 missed checks (e.g. while it was SIGSTOPped); the watchdog here
notices the silence and registers again, and because the id is persisted in ``DATA_DIR/server_id`` the
server comes back with the same virtual-node positions (Dynamo §4.2: a node keeps its tokens).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from shared.auth.server_identity import load_server_key, registration_proof, save_server_key
from shared.config import ChunkServerSettings
from shared.errors import RingFSError, Unavailable
from shared.protocol.models import RegistrationResult, ServerRegistration
from shared.rpc.leader_client import LeaderClient

log = logging.getLogger("ringfs.chunk_server.registration")

SERVER_ID_FILE = "server_id"
# Retry delays while the leader is unreachable, seconds: quick at first (the cluster is starting), capped
# so a long leader outage costs one small request every few seconds.
BACKOFF_START = 0.1
BACKOFF_CAP = 5.0
REGISTRATION_TIMEOUT = 5.0  # seconds one registration request may take before it is retried
# The leader is presumed to have given up on us after this many health-check intervals of silence (it
# removes a server after 5 misses; re-registering after 3 rejoins sooner without racing a slow check).
SILENCE_INTERVALS = 3
WATCHDOG_JOB = "registration-watchdog"


def load_or_create_server_id(data_dir: Path) -> str:
    """The id stored in ``data_dir/server_id``, created once as ``cs-<12 hex>`` (temp file + rename)."""
    path = Path(data_dir) / SERVER_ID_FILE
    try:
        server_id = path.read_text().strip()
        if server_id:
            return server_id
    except FileNotFoundError:
        pass
    server_id = "cs-" + uuid.uuid4().hex[:12]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(server_id + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return server_id


class Registration:
    """Keeps this server registered with the leader.

    ``last_health_check`` is the ``time.monotonic()`` of the leader's latest health check (or of the
    latest successful registration); ``health_check_interval`` comes from the leader's answer.
    """

    def __init__(self, settings: ChunkServerSettings, scheduler: AsyncIOScheduler, leader: LeaderClient) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.leader = leader
        self.server_id = load_or_create_server_id(settings.data_dir)
        self.key = load_server_key(settings.data_dir)  # issued by the leader at the first registration
        self.health_check_interval: float | None = None
        self.last_health_check = time.monotonic()
        self.epoch: int | None = None
        self._task: asyncio.Task | None = None

    def record_health_check(self) -> None:
        """Called by ``GET /healthz`` when the leader asks."""
        self.last_health_check = time.monotonic()

    def start(self) -> None:
        """Register in the background (unless already trying); the server answers requests meanwhile."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._register_until_done(), name="register")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def _registration(self) -> ServerRegistration:
        capacity = self.settings.capacity_bytes or shutil.disk_usage(self.settings.data_dir).free
        url = self.settings.advertise_url
        proof = registration_proof(self.key, self.server_id, url) if self.key else None
        return ServerRegistration(server_id=self.server_id, advertise_url=url, capacity_bytes=capacity, proof=proof)

    async def _register_until_done(self) -> RegistrationResult:
        """``POST {LEADER_URL}/servers`` until the leader accepts, with capped exponential backoff."""
        delay, attempts = BACKOFF_START, 0
        while True:
            attempts += 1
            try:
                result = await self.leader.rpc_register(self._registration(), timeout=REGISTRATION_TIMEOUT)
                self._registered(result)
                return result
            except Unavailable as exc:
                if attempts == 1 or attempts % 20 == 0:
                    log.warning("%s; retrying", exc)
            except RingFSError as exc:  # refused, or an answer we cannot parse
                log.warning("leader refused registration (%d): %s", exc.status, exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    def _registered(self, result: RegistrationResult) -> None:
        if result.server_key:
            self.key = bytes.fromhex(result.server_key)
            save_server_key(self.settings.data_dir, self.key)
        self.last_health_check = time.monotonic()  # a fresh grace period before the watchdog worries
        self.epoch = result.epoch
        log.info("registered as %s at ring epoch %d", self.server_id, result.epoch,
                 extra={"server_id": self.server_id, "epoch": result.epoch})
        if result.health_check_interval != self.health_check_interval:
            self.health_check_interval = result.health_check_interval
            self.scheduler.add_job(self.watchdog, "interval", seconds=result.health_check_interval,
                                   id=WATCHDOG_JOB, replace_existing=True, max_instances=1, coalesce=True)

    async def watchdog(self) -> None:
        """Register again when no health check arrived for ``SILENCE_INTERVALS`` intervals."""
        if self.health_check_interval is None or (self._task is not None and not self._task.done()):
            return
        silence = time.monotonic() - self.last_health_check
        if silence > SILENCE_INTERVALS * self.health_check_interval:
            log.warning("no health check from the leader for %.1f s; registering again", silence)
            self.start()
