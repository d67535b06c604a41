"""Settings for every service, read once from the environment (12-factor, as the reference design's
``docker run -e LEADER_URL=... -e PORT=...``).

One ``BaseSettings`` per service on a shared base; an invalid value fails at start with a message that
names the variable (pydantic-settings does that).
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.protocol.rules import LEASE_CALLBACK_RE

# Ten minutes, from the reference design: "pending writes or name mappings not finalized within 10
# minutes are automatically deleted".
DEFAULT_PENDING_TTL = 600.0


class ServiceSettings(BaseSettings):
    """What every service reads: where to bind, how to log, and what makes it a member of the cluster
    (README "Security")."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Loopback unless told otherwise: a service reachable from other hosts is a choice (Docker sets
    # HOST=0.0.0.0 inside its network).
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    log_level: str = "INFO"
    log_format: str = Field(default="text", pattern="^(text|json)$")
    # The cluster secret (hex, >= 32 bytes), or a file holding it; the previous one is still accepted
    # while a rotation rolls out (shared/auth/cluster_secret.py).
    cluster_secret: SecretStr | None = None
    cluster_secret_file: Path | None = None
    cluster_secret_previous: SecretStr | None = None
    # Open connections plus requests in progress before uvicorn answers 503 at once (shared/serve.py): a
    # flood of idle or trickling connections cannot exhaust file descriptors and memory.
    max_connections: int = Field(default=2048, ge=16)
    # Seconds a request body may go without a byte before it is given up with 408 (shared/bodies.py).
    body_idle_timeout: float = Field(default=30.0, gt=0)
    # Seconds from a connection's (or a kept-alive request's) first byte to the end of its headers before
    # it is closed with 408 (shared/header_limits.py).
    header_timeout: float = Field(default=20.0, gt=0)
    # Run without any credential: every port is open to anyone who can reach it. Loudly logged.
    insecure_no_auth: bool = False
    # Bearer token for GET /metrics (Prometheus's `authorization` scrape option); unset: /metrics needs
    # the cluster credential.
    metrics_token: SecretStr | None = None
    # TLS: this service's certificate and key (PEM), and the CA that signs the other services'
    # certificates, for the internal calls this service makes.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert_file else "http"

    def advertised(self, url: str) -> str:
        """An ``ADVERTISE_URL`` without its trailing ``/``; unset: ``http(s)://<hostname>:<PORT>``."""
        return (url or f"{self.scheme}://{socket.gethostname()}:{self.port}").rstrip("/")

    @field_validator("cluster_secret", "cluster_secret_file", "cluster_secret_previous", "metrics_token",
                     "tls_cert_file", "tls_key_file", "tls_ca_file", mode="before", check_fields=False)
    @classmethod
    def _empty_is_unset(cls, value):
        """``VAR=`` (as compose passes an unset variable) means not set."""
        return None if value == "" else value


class LeaderSettings(ServiceSettings):
    """The leader: metadata store, cluster policy, health checks, the pending sweeper, the trash purge and
    the expiry of unfinished multipart uploads."""

    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("./data/leader")
    database_url: str = ""
    replication_factor: int = Field(default=3, ge=1, le=16)
    # The write quorum (Garage's write quorum, HDFS's minimum replication): a write succeeds once every
    # chunk has this many durable copies; unset: min(2, REPLICATION_FACTOR). Anti-entropy makes the rest.
    min_write_replicas: int | None = Field(default=None, ge=1, le=16)
    chunk_size: int = Field(default=1024, ge=1)
    # Bounds for a per-upload ``?chunk_size=``: 1 KiB keeps metadata bounded, 4 MiB keeps one chunk
    # well inside one request.
    min_chunk_size: int = Field(default=1024, ge=1)
    max_chunk_size: int = Field(default=4 * 1024 * 1024, ge=1)
    # The chunk-size policy (shared/chunk_size.py): a file's chunks grow (CHUNK_SIZE x 2^k, at most
    # MAX_CHUNK_SIZE) so it has at most this many; 0 = every file gets CHUNK_SIZE. An upload of unknown
    # size that passes CHUNK_SIZE x TARGET_CHUNKS_PER_FILE bytes gets STREAMED_CHUNK_SIZE.
    target_chunks_per_file: int = Field(default=4096, ge=0)
    streamed_chunk_size: int = Field(default=64 * 1024, ge=1)
    virtual_nodes: int = Field(default=64, ge=1, le=4096)
    health_check_interval: float = Field(default=10.0, gt=0)
    # Reference design: 1-4 missed checks = unhealthy, 5 = removed from the ring.
    removal_threshold: int = Field(default=5, ge=1)
    health_check_timeout: float = Field(default=2.0, gt=0)
    pending_ttl: float = Field(default=DEFAULT_PENDING_TTL, gt=0)
    sweep_interval: float = Field(default=60.0, gt=0)
    # Seconds a deleted version stays in the trash (restorable, its chunks kept) before the purge job
    # drops it: 7 days, long enough to notice a mistaken delete after a weekend.
    trash_retention: float = Field(default=7 * 24 * 3600.0, gt=0)
    # Seconds a multipart upload may stay unfinished before the sweeper aborts it (its parts dropped, their
    # chunks then collected): 7 days, as a common S3 lifecycle rule for incomplete uploads, so a client
    # can resume a large upload after a weekend.
    multipart_ttl: float = Field(default=7 * 24 * 3600.0, gt=0)
    # Seconds a user app may answer a path's latest version from its own cache after asking
    # (leader/read_leases.py); a mutation of the path revokes it first, or waits it out when the holder
    # does not answer. 0: no read leases.
    lease_seconds: float = Field(default=3.0, ge=0, le=60)
    # The root key, made sure of at start (MinIO's MINIO_ROOT_USER / MINIO_ROOT_PASSWORD).
    # Where other services reach this leader; a standby names the active leader by it (with several
    # leaders on one PostgreSQL: leader/election.py). Unset: http(s)://<hostname>:<PORT>.
    advertise_url: str = ""
    root_access_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{16,128}$")
    root_secret_key: SecretStr | None = Field(default=None, min_length=16, max_length=128)

    @field_validator("root_access_key", "root_secret_key", mode="before")
    @classmethod
    def _empty_root_is_unset(cls, value):
        return None if value == "" else value

    @model_validator(mode="after")
    def _defaults(self) -> "LeaderSettings":
        if bool(self.root_access_key) != bool(self.root_secret_key):
            raise ValueError("ROOT_ACCESS_KEY and ROOT_SECRET_KEY go together: set both or neither")
        if self.min_write_replicas is None:
            self.min_write_replicas = min(2, self.replication_factor)
        if self.min_write_replicas > self.replication_factor:
            raise ValueError("MIN_WRITE_REPLICAS cannot exceed REPLICATION_FACTOR")
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir.resolve()}/leader.db"
        if not (self.min_chunk_size <= self.chunk_size <= self.max_chunk_size):
            raise ValueError("CHUNK_SIZE must lie between MIN_CHUNK_SIZE and MAX_CHUNK_SIZE")
        if not (self.min_chunk_size <= self.streamed_chunk_size <= self.max_chunk_size):
            raise ValueError("STREAMED_CHUNK_SIZE must lie between MIN_CHUNK_SIZE and MAX_CHUNK_SIZE")
        self.advertise_url = self.advertised(self.advertise_url)
        return self


def leader_url_list(leader_url: str, leader_urls: str) -> list[str]:
    """``LEADER_URLS`` (comma-separated, in the order to try them) when set, else ``[LEADER_URL]``.
    Raises ValueError for an empty entry."""
    if not leader_urls.strip():
        return [leader_url.rstrip("/")]
    urls = [u.strip().rstrip("/") for u in leader_urls.split(",")]
    if not all(urls):
        raise ValueError(f"LEADER_URLS has an empty entry: {leader_urls!r}")
    return urls


class LeaderFollowerSettings(ServiceSettings):
    """What a service that calls the leader needs to find it (chunk servers and user apps)."""

    leader_url: str = "http://127.0.0.1:8000"
    # Several leaders (standbys on one PostgreSQL): every one of them, comma-separated; overrides
    # LEADER_URL. Calls go to the active one and follow a standby's hint (shared/rpc/leader_client.py).
    leader_urls: str = ""

    @model_validator(mode="after")
    def _leader_urls(self) -> "LeaderFollowerSettings":
        self.leader_url = self.leader_url.rstrip("/")
        leader_url_list(self.leader_url, self.leader_urls)
        return self

    @property
    def leaders(self) -> list[str]:
        """The leader URLs to call, in order."""
        return leader_url_list(self.leader_url, self.leader_urls)


class ChunkServerSettings(LeaderFollowerSettings):
    """A chunk server: where it stores chunks, how it registers and how it durably acknowledges."""

    port: int = Field(default=8100, ge=0, le=65535)
    data_dir: Path = Path("./data/chunk_server")
    advertise_url: str = ""
    capacity_bytes: int = Field(default=0, ge=0)  # 0 = the free space of DATA_DIR's file system
    pending_ttl: float = Field(default=DEFAULT_PENDING_TTL, gt=0)
    sweep_interval: float = Field(default=60.0, gt=0)
    # False: a write is acknowledged once it is in the operating system (survives kill -9 of the
    # process). True: also fsync'd (survives power loss), at a cost the benchmark measures.
    fsync: bool = False
    max_chunk_size: int = Field(default=4 * 1024 * 1024, ge=1)
    # docs/failure-handling.md. Anti-entropy: a pause between full passes, chunks per batch (one exists and
    # one replicate request per peer per batch), and a push budget that leaves room for client writes.
    # A ring epoch change starts a pass at once, so the interval only bounds how often an unchanged ring
    # is re-checked; each pass compares every chunk with its peers, so this is CPU the clients don't get.
    anti_entropy_interval: float = Field(default=600.0, gt=0)
    anti_entropy_batch: int = Field(default=1024, ge=1, le=65536)
    anti_entropy_bytes_per_sec: float = Field(default=20e6, gt=0)
    # Chunks compared per second, so a pass over millions of chunks cannot take a whole core from clients.
    anti_entropy_chunks_per_sec: float = Field(default=5000.0, gt=0)
    # Handoff (chunk_server/handoff.py): a member counts as a proof holder only after this many seconds in
    # the ring (10 minutes: a burst of registrations cannot make anyone drop a copy), and drops of
    # proven-redundant copies are paced, in chunks per second.
    handoff_min_member_age: float = Field(default=600.0, ge=0)
    handoff_drops_per_sec: float = Field(default=500.0, gt=0)
    # Scrub: 1 MB/s of 1 KB chunks is ~1000 re-hashes a second; a 10 GB server is scrubbed about every
    # 3 hours (HDFS's block scanner takes three weeks per scan).
    scrub_interval: float = Field(default=3600.0, gt=0)
    scrub_bytes_per_sec: float = Field(default=1e6, gt=0)
    # GC: a round every 5 minutes; a chunk must be untouched for GC_GRACE seconds before it is a candidate.
    gc_interval: float = Field(default=300.0, gt=0)
    gc_grace: float = Field(default=3600.0, ge=0)
    # The chunk store's segment files (docs/chunk-store.md): a segment is sealed at SEGMENT_BYTES; a round
    # every COMPACTION_INTERVAL seconds rewrites sealed segments less than COMPACTION_LIVE_RATIO live,
    # reading at most COMPACTION_BYTES_PER_SEC.
    segment_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)
    compaction_interval: float = Field(default=600.0, gt=0)
    compaction_live_ratio: float = Field(default=0.5, gt=0, le=1)
    compaction_bytes_per_sec: float = Field(default=20e6, gt=0)
    ring_refresh: float = Field(default=5.0, gt=0)
    # Timeout of one peer / leader request made by the background jobs, seconds.
    peer_timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _defaults(self) -> "ChunkServerSettings":
        self.advertise_url = self.advertised(self.advertise_url)
        return self


class UserAppSettings(LeaderFollowerSettings):
    """A user app: the stateless user web API."""

    port: int = Field(default=8010, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    # How long a cached ring is trusted before it is fetched again, seconds. Epoch changes seen in
    # leader responses refresh it sooner.
    ring_ttl: float = Field(default=2.0, gt=0)
    # Bytes hashed and sent per pipeline step: big enough to batch 1024 chunks of 1 KB per request,
    # small enough that a few in flight keep memory flat.
    piece_size: int = Field(default=1024 * 1024, ge=1024)
    pieces_in_flight: int = Field(default=3, ge=1, le=64)
    request_timeout: float = Field(default=30.0, gt=0)
    # Bytes of verified chunks kept by digest for later reads (0 disables), and the largest file, in
    # bytes, whose chunks are admitted (user_app/chunk_cache.py).
    chunk_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    chunk_cache_max_file: int = Field(default=1024 * 1024, ge=0)
    # Seconds a verified access key is trusted before the leader is asked again: how long a key deleted
    # on another user app can keep working here (user_app/auth/key_cache.py).
    key_cache_ttl: float = Field(default=5.0, ge=0, le=60)
    # Test-only fault injection: crash the process right after the named 2PC phase (1-3).
    crash_after_phase: int = Field(default=0, ge=0, le=3)
    # The S3-compatible API (user_app/s3/), served by this same process on its own port (SeaweedFS's
    # 8333; 0: no S3 endpoint). SigV4 scopes must name S3_REGION. With S3_DOMAIN (e.g.
    # "s3.example.com") a Host of "<bucket>.s3.example.com" names the bucket (virtual-host style);
    # path-style URLs work either way.
    s3_port: int = Field(default=8333, ge=0, le=65535)
    s3_region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,32}$")
    s3_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    # How long a web-page login lasts, seconds (user_app/web/sessions.py): 8 hours, a working day.
    web_session_seconds: float = Field(default=8 * 3600, ge=60, le=30 * 86400)
    # Answer a path's latest version from memory while the leader's read lease on it runs
    # (user_app/manifest_leases.py). The leader revokes leases at ADVERTISE_URL, where it must reach this
    # process (unset: http(s)://<hostname>:<PORT>). Off with WORKERS > 1.
    read_leases: bool = True
    advertise_url: str = ""

    @model_validator(mode="after")
    def _defaults(self) -> "UserAppSettings":
        self.advertise_url = self.advertised(self.advertise_url)
        if self.read_leases and not LEASE_CALLBACK_RE.match(self.advertise_url):
            raise ValueError(f"ADVERTISE_URL must be http(s)://host:port[/prefix], where the leader reaches this "
                             f"user app (or set READ_LEASES=false), got {self.advertise_url[:80]!r}")
        if self.s3_port and self.s3_port == self.port:
            raise ValueError(f"S3_PORT {self.s3_port} is the user API's PORT too: give S3 its own port (0: none)")
        return self
