"""Bounded resources at the edge, on real services (issue 10): request heads bounded in size (431) and time
(408, shared/header_limits.py); bodies bounded per route (413 JSON before the body is read, or as soon
as a body without a length passes the limit) and in time (408 after ``BODY_IDLE_TIMEOUT``, with the
stalled upload's pending chunks aborted at once; shared/bodies.py); the batch budget shared so that
stalled batch writes hold only their part of it; and ``/manifests`` and ``/batch/read`` answers bounded
in chunks and bytes however often a path is repeated."""

from __future__ import annotations

import hashlib
import json
import socket
import time

import httpx
import pytest

from shared.protocol.batches import encode_batch_files, iter_batch_entries
from shared.protocol.manifests import Manifest, decode_manifests
from shared.protocol.rules import MAX_MANIFEST_CHUNKS
from tests.conftest import FAST_ENV, database_url_for
from tests.utils.auth import ROOT, basic_header, cluster_header, http
from tests.utils.scrape import metric
from user_app.client.local_cluster import LocalCluster, wait_until
from user_app.multi_file import MAX_READ_ANSWER, MAX_WRITE_BODY

pytestmark = pytest.mark.timeout(120)

SHORT_TIMEOUTS = {"HEADER_TIMEOUT": "1", "BODY_IDLE_TIMEOUT": "2"}


@pytest.fixture(scope="module")
def short_cluster(tmp_path_factory):
    """A cluster whose services give up a request head after 1 s and a stalled body after 2 s."""
    data = tmp_path_factory.mktemp("short-timeouts")
    c = LocalCluster(data_dir=data, chunk_servers=3, user_apps=1, replication=3, env={**FAST_ENV, **SHORT_TIMEOUTS},
                     database_url=database_url_for(data))
    with c:
        yield c


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=15)


def answer(s: socket.socket) -> tuple[int, dict, bytes]:
    """Read one HTTP/1.1 answer with a Content-Length: (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        block = s.recv(65536)
        if not block:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += block
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        block = s.recv(65536)
        if not block:
            break
        body += block
    return int(lines[0].split()[1]), headers, body


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def send_until_refused(s: socket.socket, blocks) -> None:
    """Send ``blocks`` until the server stops reading (it answered and closed)."""
    try:
        for block in blocks:
            s.sendall(block)
    except (BrokenPipeError, ConnectionResetError):
        pass


# ------------------------------------------------------------------ request heads


def test_request_head_over_64k_is_431_on_every_service(cluster):
    for url in (cluster.url, cluster.leader_url, cluster.servers[0].url):
        with connect(url) as s:
            send_until_refused(s, [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"]
                               + [b"X-Filler-%d: %s\r\n" % (i, b"a" * 8000) for i in range(20)] + [b"\r\n"])
            status, _, body = answer(s)
            assert status == 431 and "exceed" in json.loads(body)["error"], url
            assert closed_by_peer(s)
        assert http.get(url + "/healthz").status_code == 200  # and the service is fine


def test_trickled_and_silent_heads_get_408_but_kept_alive_connections_stay(short_cluster):
    url = short_cluster.url
    with connect(url) as s:  # slowloris: a header line every 0.3 s, never the end of the head
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started, status = time.monotonic(), None
        s.settimeout(0.3)
        for i in range(40):
            try:
                s.sendall(b"X-Slow-%d: 1\r\n" % i)
                status, _, _ = answer(s)
                break
            except (socket.timeout, TimeoutError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert status == 408, status
        assert time.monotonic() - started < 6
    with connect(url) as s:  # connects and sends nothing
        status, _, body = answer(s)
        assert status == 408 and "headers" in json.loads(body)["error"]
    with connect(url) as s:  # a kept-alive connection idle past HEADER_TIMEOUT is not cut by it
        request = f"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        s.sendall(request)
        assert answer(s)[0] == 200
        time.sleep(1.5)  # longer than HEADER_TIMEOUT: the deadline runs only while a head is arriving
        s.sendall(request)
        assert answer(s)[0] == 200


# ------------------------------------------------------------------ body size


def test_json_body_over_its_limit_is_413_json_announced_or_not(cluster):
    # announced: refused before a byte of it is read (and before authentication)
    with connect(cluster.url) as s:
        s.sendall(b"POST /rename HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2000000\r\n\r\n")
        status, headers, body = answer(s)
        assert status == 413 and "2000000 bytes exceeds the limit" in json.loads(body)["error"]
    # chunked, to the user app and to the leader (signed, so it passes authentication): refused once
    # the body passes 1 MiB, not read to its end
    for url, path, auth in ((cluster.url, "/rename", f"Authorization: {basic_header(*ROOT)}"),
                            (cluster.leader_url, "/servers", f"X-RingFS-Auth: {cluster_header('POST', '/servers')}")):
        with connect(url) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n".encode())
            block = b'{"a":"' + b"x" * 65536
            send_until_refused(s, (b"%x\r\n%s\r\n" % (len(block), block) for _ in range(64)))  # 4 MiB offered
            status, _, body = answer(s)
            assert status == 413 and "exceeds the limit of 1048576 bytes" in json.loads(body)["error"], (url, body)


def test_leader_reads_no_more_of_a_txn_body_than_its_query_allows(cluster):
    """The issue's attack: a 256 MiB chunked body to /txns grew the leader by 220 MiB before its 400. The
    body of a 1-chunk version is 32 bytes; a longer one is refused once it passes that."""
    query = "/txns?txn_id=limits-1&path=limits/one&size=10&sha256=" + "0" * 64
    with connect(cluster.leader_url) as s:
        s.sendall(f"POST {query} HTTP/1.1\r\nHost: x\r\nX-RingFS-Auth: {cluster_header('POST', query)}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        block = b"\0" * 65536
        send_until_refused(s, (b"%x\r\n%s\r\n" % (len(block), block) for _ in range(4096)))  # 256 MiB offered
        status, _, body = answer(s)
    assert status == 413 and "33 bytes" in json.loads(body)["error"], body


# ------------------------------------------------------------------ stalled bodies


def pending_chunks(cluster) -> float:
    return sum(metric(server.url, "ringfs_chunk_pending_chunks") for server in cluster.servers)


def test_stalled_put_is_408_and_its_pending_chunks_are_aborted_at_once(short_cluster):
    cluster = short_cluster
    assert pending_chunks(cluster) == 0
    with connect(cluster.url) as s:
        s.sendall(f"PUT /files/stall/big HTTP/1.1\r\nHost: x\r\nAuthorization: {basic_header(*ROOT)}\r\n"
                  f"Content-Length: {8 << 20}\r\n\r\n".encode())
        s.sendall(b"s" * (2 << 20))

        def written_pending() -> bool:
            s.sendall(b"s")  # a byte now and then keeps the body alive while the chunks are prepared
            return pending_chunks(cluster) > 0

        wait_until(written_pending, 20, interval=0.3, what="pending chunks of the stalled PUT")
        stalled_at = time.monotonic()
        status, _, body = answer(s)  # now it stops sending
        assert status == 408 and "no byte of the request body" in json.loads(body)["error"]
        assert time.monotonic() - stalled_at < 10
    # aborted by the writer at once: the sweeper would take PENDING_TTL (10 minutes)
    wait_until(lambda: pending_chunks(cluster) == 0, 10, what="the stalled PUT's pending chunks aborted")
    assert http.get(cluster.url + "/files/stall/big").status_code == 404


def test_stalled_batch_writes_hold_only_their_keys_share_of_the_batch_budget(cluster):
    """Four batch writes that announce 16 MiB and stop after 16 bytes (the whole 64 MiB body budget, had
    they all been let in): they hold only their key's half, so batch writes of another key still go
    through at once (they waited 11-27 s behind a single stalled one before)."""
    other = http.post(cluster.url + "/admin/keys", json={"name": "fairness", "grants": [
        {"prefix": "fair/", "access": "write"}]}).json()
    stalled = []
    try:
        for _ in range(4):
            s = connect(cluster.url)
            s.sendall(f"POST /batch/write HTTP/1.1\r\nHost: x\r\nAuthorization: {basic_header(*ROOT)}\r\n"
                      f"Content-Length: {MAX_WRITE_BODY}\r\n\r\n".encode() + b"\0" * 16)
            stalled.append(s)
        for round_ in range(3):
            files = [(f"fair/{round_}/{i}", b"f%d" % i) for i in range(20)]
            r = httpx.post(cluster.url + "/batch/write", content=encode_batch_files(files), timeout=10,
                           auth=(other["access_key"], other["secret_key"]))
            assert r.status_code == 200 and all(x.get("version") == 1 for x in r.json()["results"]), r.text
        for s in stalled:
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)  # still waiting on their bodies: nothing answered them
    finally:
        for s in stalled:
            s.close()


# ------------------------------------------------------------------ amplification


def test_repeated_paths_cost_their_chunks_each_time_in_manifests_and_batch_reads(cluster, client):
    data = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB: 1024 chunks of 1 KiB
    client.put("amp/one-mib", data)
    paths = ["amp/one-mib"] * 1024

    r = http.post(cluster.leader_url + "/manifests", json={"paths": paths})
    entries = decode_manifests(r.content)
    fits = MAX_MANIFEST_CHUNKS // 1024
    assert all(isinstance(e, Manifest) and len(e) == 1024 for e in entries[:fits])
    assert all(not isinstance(e, Manifest) and e.status == 413 for e in entries[fits:]), entries[fits]
    assert len(r.content) < MAX_MANIFEST_CHUNKS * 32 + 1024 * 300  # 2 MiB of digests, not 32 MiB

    r = http.post(cluster.url + "/batch/read", json={"paths": paths}, timeout=60)
    got = [(p, status, bytes(body)) for p, status, body in iter_batch_entries(r.content)]
    sent = MAX_READ_ANSWER // len(data)
    assert [status for _, status, _ in got[:sent]] == [200] * sent
    assert all(body == data for _, _, body in got[:sent])
    assert all(status == 413 for _, status, _ in got[sent:]), got[sent][:2]
    assert len(r.content) < MAX_READ_ANSWER + 1024 * 1024
