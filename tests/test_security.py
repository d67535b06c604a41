"""Trust, replayed as the attacks it is meant to stop (README "Security"), on real processes: nobody reads,
writes or destroys data without a key, and no cluster member can make RingFS lose data.

Every request a test makes without going through ``tests/utils/auth.http`` is deliberately missing or
bending a credential.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from shared.auth.cluster_secret import SigningKey, parse_secret
from shared.auth.rpc_signing import HEADER, PURPOSE, sign
from shared.protocol.rules import HEALTH_CHECK_HEADER
from tests.utils.auth import CLUSTER_SECRET, ROOT, TestAuth, basic_header, cluster_header, http
from tests.utils.data import random_bytes
from user_app.client import Client, ClientError
from user_app.client.local_cluster import Service, free_port, wait_until

pytestmark = pytest.mark.timeout(180)

KEY = SigningKey.for_purpose(parse_secret(CLUSTER_SECRET, "test"), PURPOSE)


def openapi_routes(base: str, auth: httpx.Auth) -> list[tuple[str, str]]:
    """``(method, path with its parameters filled in)`` of every route a service's OpenAPI lists."""
    spec = httpx.get(base + "/openapi.json", auth=auth, timeout=10).json()
    out = []
    for path, ops in spec["paths"].items():
        concrete = path.replace("{path}", "a/b.txt").replace("{txn_id}", "t1").replace(
            "{chunk_id}", "0" * 64).replace("{access_key}", "RKNOSUCHKEY000000000").replace("{folder}", "a").replace(
            "{upload_id}", "0" * 48)
        out += [(m.upper(), concrete) for m in ops if m in ("get", "post", "put", "delete", "head")]
    return out


# ---------------------------------------------------------------- the user API


def test_every_user_route_needs_a_key(cluster):
    routes = openapi_routes(cluster.url, TestAuth())
    assert len(routes) >= 15, routes
    wrong = basic_header(ROOT[0], ROOT[1] + "x")
    unknown = basic_header("RKNOSUCHKEY000000000", ROOT[1])
    for method, path in routes + [("GET", "/openapi.json"), ("GET", "/docs")]:
        if path == "/healthz":
            continue
        for label, headers in (("anonymous", {}), ("wrong secret", {"Authorization": wrong}),
                               ("unknown key", {"Authorization": unknown}),
                               ("not Basic", {"Authorization": "Bearer abc"})):
            r = httpx.request(method, cluster.url + path, headers=headers, timeout=10)
            assert r.status_code == 401, (label, method, path, r.status_code, r.text)
            assert method == "HEAD" or set(r.json()) == {"error"}
            assert r.headers["www-authenticate"].startswith('Basic realm="RingFS"'), (method, path)
    assert httpx.get(cluster.url + "/healthz").status_code == 200  # liveness stays open


def test_grants_read_only_and_prefixes(cluster, client):
    client.put("acme/q3.pdf", b"acme numbers")
    client.put("acme-other/x", b"not acme's")
    client.put("beta/secret.txt", b"beta only")
    reader = client.create_key("auditor", [{"prefix": "acme/", "access": "read"}])
    writer = client.create_key("acme app", [{"prefix": "acme/", "access": "write"}])
    with Client(cluster.url, access_key=reader["access_key"], secret_key=reader["secret_key"]) as ro, \
            Client(cluster.url, access_key=writer["access_key"], secret_key=writer["secret_key"]) as rw:
        assert ro.get("acme/q3.pdf") == b"acme numbers" and ro.stat("acme/q3.pdf")["size"] == 12
        for call in (lambda: ro.put("acme/new", b"x"), lambda: ro.rm("acme/q3.pdf"),
                     lambda: ro.mv("acme/q3.pdf", "acme/moved.pdf"), lambda: ro.get("beta/secret.txt"),
                     lambda: ro.get("acme-other/x"), lambda: ro.fsck(), lambda: ro.cluster(), lambda: ro.keys()):
            with pytest.raises(ClientError) as e:
                call()
            assert e.value.status == 403, e.value
        # a read-only key's batch write: every file refused on its own
        assert [r["status"] for r in ro.put_many([("acme/b", b"1"), ("acme/c", b"2")])] == [403, 403]
        assert rw.put("acme/new.txt", b"written")["version"] == 1
        with pytest.raises(ClientError) as e:
            rw.put("beta/evil.txt", b"x")
        assert e.value.status == 403
        with pytest.raises(ClientError) as e:
            rw.mv("acme/new.txt", "beta/new.txt")  # write on both sides
        assert e.value.status == 403
        # listings show only what the key may read
        assert [e["name"] for e in ro.ls("")] == ["acme"]
        assert {e["name"] for e in ro.ls("acme")} == {"q3.pdf", "new.txt"}
        with pytest.raises(ClientError) as e:
            ro.ls("beta")
        assert e.value.status == 403
        got = ro.get_many(["acme/q3.pdf", "beta/secret.txt"])
        assert got[0][1] == 200 and got[1][1] == 403
    assert client.get("beta/secret.txt") == b"beta only"


def test_deleted_key_stops_working(cluster, client):
    key = client.create_key("temp", [{"prefix": "", "access": "read"}])
    with Client(cluster.url, access_key=key["access_key"], secret_key=key["secret_key"]) as c:
        c.ls("")
        client.delete_key(key["access_key"])  # through the same user app: dropped from its cache at once
        with pytest.raises(ClientError) as e:
            c.ls("")
        assert e.value.status == 401
    assert key["access_key"] not in {k["access_key"] for k in client.keys()}


# ---------------------------------------------------------------- the cluster boundary


def _internal_routes(cluster) -> list[tuple[str, str, str]]:
    signed = TestAuth(basic=None)
    out = [(cluster.leader_url, m, p) for m, p in openapi_routes(cluster.leader_url, signed)]
    out += [(cluster.servers[0].url, m, p) for m, p in openapi_routes(cluster.servers[0].url, signed)]
    out += [(cluster.leader_url, "GET", "/metrics"), (cluster.servers[0].url, "GET", "/metrics")]
    return out


def test_unsigned_expired_forged_and_replayed_internal_requests_are_refused(cluster):
    routes = _internal_routes(cluster)
    assert len(routes) >= 25, routes
    other_key = SigningKey.for_purpose(parse_secret("ab" * 32, "other"), PURPOSE)
    for base, method, path in routes:
        if path == "/healthz":
            continue
        expired = sign(KEY, method, path, now=time.time() - 60)
        future = sign(KEY, method, path, now=time.time() + 60)
        for label, headers in (("unsigned", {}), ("expired", {HEADER: expired}), ("from the future", {HEADER: future}),
                               ("another cluster's key", {HEADER: sign(other_key, method, path)}),
                               ("signed for another path", {HEADER: cluster_header(method, "/another/path")}),
                               ("garbage", {HEADER: "RingFS-RPC key=x, ts=1, nonce=n, sig=00"})):
            r = httpx.request(method, base + path, headers=headers, timeout=10)
            assert r.status_code == 401, (label, base, method, path, r.status_code, r.text)
            assert method == "HEAD" or "error" in r.json()
        # a captured request, sent again: refused even within its validity window
        captured = {HEADER: cluster_header(method, path)}
        first = httpx.request(method, base + path, headers=captured, timeout=30)
        assert first.status_code != 401, (method, path, first.text)
        again = httpx.request(method, base + path, headers=captured, timeout=10)
        assert again.status_code == 401, (method, path)
        assert method == "HEAD" or "already used" in again.json()["error"], (method, path)


def test_a_fake_chunk_server_without_the_secret_cannot_register(cluster):
    before = http.get(cluster.leader_url + "/ring").json()
    reg = {"server_id": "fake-1", "advertise_url": f"http://127.0.0.1:{free_port()}", "capacity_bytes": 10**12}
    assert httpx.post(cluster.leader_url + "/servers", json=reg).status_code == 401
    wrong = SigningKey.for_purpose(parse_secret("cd" * 32, "wrong"), PURPOSE)
    r = httpx.post(cluster.leader_url + "/servers", json=reg, headers={HEADER: sign(wrong, "POST", "/servers")})
    assert r.status_code == 401
    after = http.get(cluster.leader_url + "/ring").json()
    assert after["epoch"] == before["epoch"] and "fake-1" not in {s["server_id"] for s in after["servers"]}


def test_registering_a_live_members_url_is_refused_and_the_member_untouched(cluster):
    victim = next(s for s in http.get(cluster.leader_url + "/ring").json()["servers"] if s["state"] == "healthy")
    epoch = http.get(cluster.leader_url + "/ring").json()["epoch"]
    for i in range(5):
        r = http.post(cluster.leader_url + "/servers", json={
            "server_id": f"impostor-{i}", "advertise_url": victim["url"], "capacity_bytes": 1})
        assert r.status_code == 409 and victim["server_id"] in r.json()["error"], r.text
    # an impostor of the victim's id (it holds the secret, not the victim's own key)
    r = http.post(cluster.leader_url + "/servers", json={
        "server_id": victim["server_id"], "advertise_url": f"http://127.0.0.1:{free_port()}", "capacity_bytes": 1})
    assert r.status_code == 403, r.text
    ring = http.get(cluster.leader_url + "/ring").json()
    assert ring["epoch"] == epoch
    assert next(s for s in ring["servers"] if s["server_id"] == victim["server_id"])["state"] == "healthy"
    with Client(cluster.url) as c:  # writes keep going
        assert c.put(f"after-impostors/{uuid.uuid4().hex}", b"still writing")["version"] == 1


def test_health_checks_need_the_servers_own_key(cluster):
    """A member's health check answer carries a proof of its own key; nobody else can make one."""
    server = cluster.servers[0]
    challenge = "c" * 22
    headers = {HEALTH_CHECK_HEADER: challenge, HEADER: cluster_header("GET", "/healthz")}
    answer = httpx.get(server.url + "/healthz", headers=headers).json()
    assert len(answer["proof"]) == 64
    # without the cluster credential the same request is plain liveness: no proof to replay
    assert "proof" not in httpx.get(server.url + "/healthz", headers={HEALTH_CHECK_HEADER: challenge}).json()


@pytest.mark.parametrize("min_member_age", ["3600", "0"], ids=["young-members-do-not-count", "proofs-alone"])
def test_a_lying_member_and_60_more_registrations_lose_nothing(make_cluster, open_client, min_member_age):
    """The rogue holds the cluster secret, registers 61 ids, passes every health check, claims to hold every
    chunk and stores nothing. Real servers keep every copy: its ids are too young to count as proof holders
    and, with that rule off (age 0), its proofs of possession fail. Once the rogue is gone, every file is
    there and fsck is clean."""
    cluster = make_cluster(chunk_servers=3, env={
        "ANTI_ENTROPY_INTERVAL": "0.5", "ANTI_ENTROPY_BYTES_PER_SEC": "100000000", "RING_REFRESH": "0.3",
        "HANDOFF_MIN_MEMBER_AGE": min_member_age, "HANDOFF_DROPS_PER_SEC": "100000"})
    client = open_client(cluster.url)
    files = {f"trust/f{i:03d}": random_bytes(3000 + i, seed=i) for i in range(300)}
    for path, data in files.items():
        client.put(path, data)

    def ae(svc) -> dict:
        return http.get(svc.url + "/stats").json()["anti_entropy"]

    rogue_port = free_port()
    rogue = subprocess.Popen([sys.executable, "-m", "tests.utils.rogue_server", cluster.leader_url, str(rogue_port), "61"],
                             stdout=subprocess.PIPE, text=True)
    try:
        codes = json.loads(rogue.stdout.readline())["codes"]
        assert codes == [200] * 61, codes
        wait_until(lambda: [s["state"] for s in cluster.ring()["servers"]].count("healthy") == 64, 30, interval=0.5,
                   what="the 61 rogue ids to be healthy members")
        passes = [ae(s)["pass"] for s in cluster.servers]
        # two full anti-entropy passes of every real server under the rogue's ring
        wait_until(lambda: all(ae(s)["pass"] >= p + 2 for s, p in zip(cluster.servers, passes)), 90,
                   interval=0.5, what="two anti-entropy passes under the rogue ring")
        asked = httpx.get(f"http://127.0.0.1:{rogue_port}/r0/rogue-requests").json()
        assert asked.get("/chunks/exists", 0) > 0, asked  # the real servers asked the rogue, and it lied
        if min_member_age == "0":  # established at once: only the proofs stand between its lies and a drop
            assert asked.get("/chunks/prove", 0) > 0, asked
        assert all(ae(s)["dropped"] == 0 for s in cluster.servers)
    finally:
        rogue.kill()  # kill -9: the rogue is gone for good
        rogue.wait()
    wait_until(lambda: len([s for s in cluster.ring()["servers"] if s["state"] != "removed"]) == 3, 60,
               what="the rogue ids to be removed")
    for path, data in files.items():
        assert client.get(path) == data, path
    report = wait_until(lambda: (lambda r: r if r["under_replicated"] == 0 and r["lost"] == 0 else None)(
        http.get(cluster.url + "/fsck", timeout=60).json()), 60, interval=1, what="fsck clean")
    assert report["ok"] and report["files"] == 300


# ---------------------------------------------------------------- what the leader commits


def test_forged_manifests_are_refused(cluster):
    data = b"x" * 5000
    digests = b"".join(hashlib.sha256(data[i:i + 1024]).digest() for i in range(0, len(data), 1024))

    def prepare(**over):
        q = {"txn_id": uuid.uuid4().hex, "path": "forged/f", "size": len(data), "sha256": "0" * 64,
             "chunk_size": 1024, **over}
        return http.post(cluster.leader_url + "/txns", params=q, content=digests,
                         headers={"content-type": "application/octet-stream"})

    for over in ({"size": 10**6}, {"size": 100}, {"size": 2**63}, {"chunk_size": 512}):
        r = prepare(**over)
        assert r.status_code == 400 and "error" in r.json(), (over, r.text)
    assert prepare().status_code == 201  # the honest one
    for bad in ("9223372036854775808", "18446744073709551616", "-1", "0"):
        r = http.get(cluster.leader_url + "/manifest", params={"path": "forged/f", "version": bad})
        assert r.status_code == 400, (bad, r.text)
    r = http.get(cluster.url + "/files/forged/f?version=9223372036854775808")
    assert r.status_code == 400 and json.loads(r.text)["error"]


# ---------------------------------------------------------------- starting without a secret


@pytest.mark.parametrize("kind", ["leader", "chunk_server", "user_app"])
def test_a_service_without_a_secret_refuses_to_start_and_says_how_to_make_one(tmp_path, kind):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_SECRET", "INSECURE"))}
    env.update(DATA_DIR=str(tmp_path), PORT=str(free_port()), LEADER_URL=f"http://127.0.0.1:{free_port()}")
    r = subprocess.run([sys.executable, "-m", kind], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "CLUSTER_SECRET" in r.stderr and "secrets.token_hex(32)" in r.stderr and "Traceback" not in r.stderr
    short = subprocess.run([sys.executable, "-m", kind], env={**env, "CLUSTER_SECRET": "ab" * 8},
                           capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "fewer than 32" in short.stderr, short.stderr


def test_insecure_no_auth_starts_and_warns_loudly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_SECRET")}
    svc = Service("leader", "leader", free_port(), {**env, "DATA_DIR": str(tmp_path), "INSECURE_NO_AUTH": "true"},
                  tmp_path / "leader.log").start()
    try:
        assert httpx.get(svc.url + "/ring").status_code == 200  # open to anyone, as it says
        wait_until(lambda: "INSECURE_NO_AUTH=true" in svc.log_path.read_text(), 10, what="the warning")
    finally:
        svc.stop()


def test_cluster_secret_rotation_keeps_keys_servers_and_data(make_cluster, open_client):
    """README "Key rotation": every service restarted with the new secret and the old one as
    CLUSTER_SECRET_PREVIOUS, then with the new one alone. Access keys, the chunk servers' own keys and
    every file survive both steps."""
    cluster = make_cluster(chunk_servers=3)
    client = open_client(cluster.url)
    client.put("rotation/a.txt", b"before the rotation")
    key = client.create_key("reader", [{"prefix": "rotation/", "access": "read"}])
    new_secret = "9e" * 32

    def restart_all(**env: str) -> None:
        for svc in cluster.services():
            svc.stop()
        for svc in [cluster.leader, *cluster.servers, *cluster.apps]:
            svc.env.update(env)
            svc.start()

    restart_all(CLUSTER_SECRET=new_secret, CLUSTER_SECRET_PREVIOUS=CLUSTER_SECRET)
    restart_all(CLUSTER_SECRET=new_secret, CLUSTER_SECRET_PREVIOUS="")
    new = TestAuth(basic=None)
    new_key = SigningKey.for_purpose(parse_secret(new_secret, "new"), PURPOSE)
    ring = httpx.get(cluster.leader_url + "/ring", headers={HEADER: sign(new_key, "GET", "/ring")}).json()
    wait_until(lambda: all(s["state"] == "healthy" for s in httpx.get(
        cluster.leader_url + "/ring", headers={HEADER: sign(new_key, "GET", "/ring")}).json()["servers"]), 20,
        what="every chunk server to pass its checks with its resealed key")
    assert len(ring["servers"]) == 3
    # the old secret no longer opens anything
    assert httpx.get(cluster.leader_url + "/ring", auth=new).status_code == 401
    with Client(cluster.url, access_key=key["access_key"], secret_key=key["secret_key"]) as reader:
        assert reader.get("rotation/a.txt") == b"before the rotation"
    assert client.put("rotation/b.txt", b"after")["version"] == 1 and client.get("rotation/b.txt") == b"after"


@pytest.mark.parametrize("url", ["http://:x", "https://a\\b", "http://u:p@h:1", "http://h:1/?q", "http://h:99999",
                                 "http://ünï:1", "ftp://h", "http://h:1/a b", "http://h:1#f"])
def test_a_registration_whose_address_cannot_be_called_is_refused(cluster, url):
    """Found by schemathesis: a member registered as ``http://:x`` once made every upload, health check and
    fsck of the cluster fail with a 500."""
    r = http.post(cluster.leader_url + "/servers", json={"server_id": "bad-url", "advertise_url": url, "capacity_bytes": 1})
    assert r.status_code == 400 and "advertise_url" in r.json()["error"], (url, r.text)
    assert http.get(cluster.leader_url + "/fsck").status_code == 200
