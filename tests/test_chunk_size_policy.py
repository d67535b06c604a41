"""The chunk-size policy (shared/chunk_size.py): the rule, its wiring from the leader's settings through
``GET /ring`` to the user app's writer, ``?chunk_size=`` overriding it, uploads with and without a
``Content-Length``, and dedup between versions of a file edited in place."""

from __future__ import annotations

import asyncio
import os

import pytest
from pydantic import ValidationError

from shared.chunk_size import leader_bytes_per_tib, policy_chunk_size
from shared.config import LeaderSettings
from shared.errors import BadRequest
from shared.ring import Ring
from shared.rpc.ring_cache import Placement
from user_app.chunker import read_ahead

KIB, MIB, GIB = 1024, 1024**2, 1024**3


# ------------------------------------------------------------------ the rule (no cluster)


@pytest.mark.parametrize("size, expected", [
    (0, 1 * KIB), (1, 1 * KIB), (200 * KIB, 1 * KIB), (4 * MIB, 1 * KIB),  # documents keep 1 KiB chunks
    (4 * MIB + 1, 2 * KIB), (8 * MIB, 2 * KIB), (20 * MIB, 8 * KIB), (256 * MIB, 64 * KIB),
    (2 * GIB, 512 * KIB), (16 * GIB, 4 * MIB), (100 * GIB, 4 * MIB),  # capped at MAX_CHUNK_SIZE
])
def test_policy_defaults(size, expected):
    assert policy_chunk_size(size, 1 * KIB, 4 * MIB, 4096) == expected


def test_policy_keeps_files_under_the_target_until_the_cap():
    previous = 0
    for size in [0, 1, 1023, 1024, 4097, 10**5, 4 * MIB - 1, 4 * MIB, 4 * MIB + 1, 10**8, 10**9, 10**10, 10**12]:
        cs = policy_chunk_size(size, 1 * KIB, 4 * MIB, 4096)
        assert cs >= previous  # grows with the file, never shrinks
        assert cs == 4 * MIB or -(-size // cs) <= 4096
        assert cs == 1 * KIB or -(-size // (cs // 2)) > 4096  # and is the smallest that does
        previous = cs


def test_policy_off_and_bytes_per_tib():
    assert policy_chunk_size(100 * GIB, 1 * KIB, 4 * MIB, 0) == 1 * KIB
    assert leader_bytes_per_tib(3 * MIB, 1 * KIB) == 32 * GIB
    assert leader_bytes_per_tib(256 * MIB, 64 * KIB) == 512 * MIB
    assert leader_bytes_per_tib(16 * GIB, 4 * MIB) == 8 * MIB


def test_placement_applies_the_policy_and_the_override():
    p = Placement(Ring(0, {}, []), 3, 1 * KIB, 1 * KIB, 4 * MIB, 2, target_chunks_per_file=4096,
                  streamed_chunk_size=64 * KIB)
    assert p.policy_threshold == 4 * MIB
    assert p.chunk_size_for_upload(None, 256 * MIB) == 64 * KIB
    assert p.chunk_size_for_upload(None, 1000) == 1 * KIB
    assert p.chunk_size_for_upload(None, None) == 64 * KIB  # unknown size, past the threshold
    assert p.chunk_size_for_upload(2 * KIB, 256 * MIB) == 2 * KIB  # ?chunk_size= wins
    with pytest.raises(BadRequest):
        p.chunk_size_for_upload(512, 10)
    off = Placement(Ring(0, {}, []), 3, 1 * KIB, 1 * KIB, 4 * MIB, 2)
    assert off.policy_threshold == 0 and off.chunk_size_for_upload(None, 256 * MIB) == 1 * KIB
    assert off.chunk_size_for_upload(None, None) == 1 * KIB


def test_streamed_chunk_size_must_be_within_bounds(tmp_path):
    with pytest.raises(ValidationError, match="STREAMED_CHUNK_SIZE"):
        LeaderSettings(data_dir=tmp_path, streamed_chunk_size=8 * MIB)


def test_read_ahead_learns_a_short_size_and_replays_everything():
    async def blocks(n: int, size: int):
        for i in range(n):
            yield bytes([i]) * size

    async def run(n: int, size: int, limit: int):
        known, stream = await read_ahead(blocks(n, size), limit)
        return known, b"".join([b async for b in stream])

    known, data = asyncio.run(run(3, 100, 300))
    assert known == 300 and data == b"\0" * 100 + b"\1" * 100 + b"\2" * 100
    known, data = asyncio.run(run(5, 100, 250))
    assert known is None and len(data) == 500 and data[-100:] == b"\4" * 100
    assert asyncio.run(run(0, 1, 10)) == (0, b"")


# ------------------------------------------------------------------ real processes

# A small target, so small files exercise the policy: at most 16 chunks per file, threshold 16 KiB.
POLICY_ENV = {"TARGET_CHUNKS_PER_FILE": "16", "STREAMED_CHUNK_SIZE": "4096"}


@pytest.fixture(scope="module")
def policy_cluster(tmp_path_factory):
    from tests.conftest import FAST_ENV, database_url_for
    from user_app.client.local_cluster import LocalCluster

    data = tmp_path_factory.mktemp("policy-cluster")
    c = LocalCluster(data_dir=data, chunk_servers=3, user_apps=1, replication=3,
                     env={**FAST_ENV, **POLICY_ENV}, database_url=database_url_for(data))
    with c:
        yield c


@pytest.fixture(scope="module")
def pclient(policy_cluster):
    from user_app.client.client import Client

    with Client(policy_cluster.url) as c:
        yield c


def _blocks(data: bytes, size: int = 3000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_cluster_publishes_the_policy(pclient):
    info = pclient.cluster()
    assert info["target_chunks_per_file"] == 16 and info["streamed_chunk_size"] == 4096


def test_content_length_upload_gets_the_policy_chunk_size(pclient):
    data = os.urandom(100 * KIB)
    r = pclient.put("policy/known.bin", data)  # bytes: httpx sends Content-Length
    st = pclient.stat("policy/known.bin")
    assert st["chunk_size"] == 8 * KIB and st["chunks"] == r["chunks"] == 13
    assert pclient.get("policy/known.bin") == data
    assert pclient.get("policy/known.bin", byte_range=(8191, 8192 + 10)) == data[8191 : 8192 + 11]


def test_streamed_upload_without_length(pclient):
    small, big = os.urandom(10 * KIB), os.urandom(100 * KIB)
    pclient.put("policy/stream-small.bin", _blocks(small))  # a generator: chunked, no Content-Length
    pclient.put("policy/stream-big.bin", _blocks(big))
    assert pclient.stat("policy/stream-small.bin")["chunk_size"] == 1 * KIB  # ended within the threshold
    assert pclient.stat("policy/stream-big.bin")["chunk_size"] == 4 * KIB  # STREAMED_CHUNK_SIZE
    assert pclient.get("policy/stream-small.bin") == small and pclient.get("policy/stream-big.bin") == big


def test_query_overrides_and_cli_client_sends_the_length(pclient, tmp_path):
    data = os.urandom(100 * KIB)
    pclient.put("policy/forced.bin", data, chunk_size=2048)
    assert pclient.stat("policy/forced.bin")["chunk_size"] == 2048
    local = tmp_path / "doc.bin"
    local.write_bytes(data)
    pclient.put_file(local, "policy/from-file.bin")  # a file object is streamed, with its length
    assert pclient.stat("policy/from-file.bin")["chunk_size"] == 8 * KIB
    pclient.put_many([("policy/batch.bin", data)])
    assert pclient.stat("policy/batch.bin")["chunk_size"] == 8 * KIB


def test_edit_in_place_shares_all_untouched_chunks(pclient):
    old = bytearray(os.urandom(120 * KIB))
    pclient.put("policy/edited.bin", bytes(old))
    new = bytearray(old)
    new[50_000:50_100] = os.urandom(100)  # 100 bytes overwritten, size unchanged
    pclient.put("policy/edited.bin", bytes(new))
    v1 = pclient._request("GET", "/locations/policy/edited.bin", params={"version": 1}).json()
    v2 = pclient.locations("policy/edited.bin")
    assert v1["chunk_size"] == v2["chunk_size"] == 8 * KIB
    a, b = [c["hash"] for c in v1["chunks"]], [c["hash"] for c in v2["chunks"]]
    assert len(a) == len(b) == 15
    assert [i for i in range(15) if a[i] != b[i]] == [50_000 // (8 * KIB)]
    assert pclient.get("policy/edited.bin") == new and pclient.get("policy/edited.bin", version=1) == old


def test_a_file_that_changes_while_it_is_uploaded(pclient, tmp_path):
    """The client announces a regular file's length: a file that grows meanwhile is stored as it was when
    the upload began; one that shrinks is refused, and nothing of it is stored."""
    from user_app.client.client import ClientError

    local = tmp_path / "growing.log"
    original = os.urandom(3 * MIB)  # three of the client's 1 MiB reads
    local.write_bytes(original)

    def grow(_n: int) -> None:  # another program appends while the upload reads the file
        with open(local, "ab") as f:
            f.write(b"x" * 100 * KIB)

    with open(local, "rb") as f:
        assert pclient.put("policy/growing.log", f, progress=grow)["size"] == len(original)
    assert pclient.get("policy/growing.log") == original

    local.write_bytes(original)
    with open(local, "rb") as f, pytest.raises(ClientError, match="shrank while it was uploaded"):
        pclient.put("policy/shrinking.log", f, progress=lambda _n: os.truncate(local, MIB + MIB // 2))
    with pytest.raises(ClientError) as missing:
        pclient.stat("policy/shrinking.log")
    assert missing.value.status == 404
