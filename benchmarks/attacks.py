"""``python benchmarks/attacks.py``: the small requests of issue 10 that made RingFS grow or stall, each on
a fresh local cluster, with the peak RSS of every service and what the attack did to other clients.

Run it from a source tree to measure that tree's services (``cd /tmp/old-tree && python
/path/to/benchmarks/attacks.py``): the services are started as ``python -m <service>`` in the current
directory, so they import the tree there, whatever this script's own tree. Figures: RSS before the
attack (``VmRSS``) and the peak during it (``VmHWM``), MiB, per service; and per attack a latency or a
time to be answered. Run by hand; the README ("Limits") quotes its figures.

Attacks:
  batch-read   one 17 KB POST /batch/read naming a 16,384-chunk file 1,024 times
  txn-body     a 256 MiB chunked body to the leader's POST /txns (signed, as a member would)
  batch-stall  4 batch writes that announce 16 MiB and stop after 16 bytes; latency of another key's batch writes
  put-stall    a PUT that sends 2 MiB of 8 MiB and stops; seconds until it is answered
  head-flood   20 MB of request headers on one connection to the user app
  slowloris    300 connections trickling header lines; latency of a normal GET meanwhile
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this script's tree for its own imports

from benchmarks.cluster import service_tree, start_cluster  # noqa: E402
from shared.auth.cluster_secret import SigningKey, parse_secret  # noqa: E402
from shared.auth.rpc_signing import HEADER, PURPOSE, sign  # noqa: E402
from shared.protocol.batches import encode_batch_files  # noqa: E402
from user_app.client.local_cluster import LocalCluster  # noqa: E402

ATTACKS = ["batch-read", "txn-body", "batch-stall", "put-stall", "head-flood", "slowloris"]
GIVE_UP = 60.0  # seconds an attack's victim request is waited for


def status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(cluster: LocalCluster, field: str) -> dict[str, float]:
    """MiB of ``field`` (VmRSS or VmHWM) per service, summed over its process tree."""
    return {svc.name: round(sum(status_kib(p.pid, field) for p in service_tree(svc)) / 1024, 1)
            for svc in cluster.services()}


class Session:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        root = cluster.root
        self.auth = (root.access_key, root.secret_key) if root else None
        self.http = httpx.Client(base_url=cluster.url, auth=self.auth, timeout=GIVE_UP)
        self.signing = SigningKey.for_purpose(parse_secret(cluster.cluster_secret, "bench"), PURPOSE)

    def raw(self, url: str) -> socket.socket:
        host, port = url.removeprefix("http://").split(":")
        return socket.create_connection((host, int(port)), timeout=GIVE_UP)

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()


def first_line(s: socket.socket) -> str:
    data = b""
    try:
        while b"\r\n" not in data:
            block = s.recv(4096)
            if not block:
                break
            data += block
    except (socket.timeout, ConnectionResetError):
        pass
    return data.split(b"\r\n", 1)[0].decode("latin-1") or "(closed without an answer)"


def send_all(s: socket.socket, blocks) -> None:
    try:
        for block in blocks:
            s.sendall(block)
    except (BrokenPipeError, ConnectionResetError):
        pass


# ------------------------------------------------------------------ attacks


def batch_read(session: Session) -> dict:
    r = session.http.put("/files/attack/big", params={"chunk_size": 1024}, content=os.urandom(16 << 20))
    r.raise_for_status()
    started = time.monotonic()
    r = session.http.post("/batch/read", json={"paths": ["attack/big"] * 1024})
    return {"answer": r.status_code, "answer_bytes": len(r.content), "seconds": round(time.monotonic() - started, 2)}


def txn_body(session: Session) -> dict:
    query = "/txns?txn_id=attack-1&path=attack/one&size=10&sha256=" + "0" * 64
    started = time.monotonic()
    with session.raw(session.cluster.leader_url) as s:
        s.sendall(f"POST {query} HTTP/1.1\r\nHost: x\r\n{HEADER}: {sign(session.signing, 'POST', query)}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        block = b"\0" * 65536
        send_all(s, (b"%x\r\n%s\r\n" % (len(block), block) for _ in range(4096)))
        send_all(s, [b"0\r\n\r\n"])
        line = first_line(s)
    return {"answer": line, "seconds": round(time.monotonic() - started, 2)}


def batch_stall(session: Session) -> dict:
    other = session.http.post("/admin/keys", json={"name": "bystander", "grants": [
        {"prefix": "attack/", "access": "write"}]})
    other.raise_for_status()
    bystander = httpx.Client(base_url=session.cluster.url, timeout=GIVE_UP,
                             auth=(other.json()["access_key"], other.json()["secret_key"]))
    stalled = []
    for _ in range(4):
        s = session.raw(session.cluster.url)
        s.sendall(f"POST /batch/write HTTP/1.1\r\nHost: x\r\nAuthorization: {session.basic()}\r\n"
                  f"Content-Length: {16 << 20}\r\n\r\n".encode() + b"\0" * 16)
        stalled.append(s)
    latencies = []
    try:
        for i in range(5):
            body = encode_batch_files([(f"attack/fair/{i}/{j}", b"x" * 100) for j in range(10)])
            started = time.monotonic()
            try:
                bystander.post("/batch/write", content=body).raise_for_status()
                latencies.append(time.monotonic() - started)
            except httpx.HTTPError:
                latencies.append(GIVE_UP)
    finally:
        for s in stalled:
            s.close()
        bystander.close()
    return {"other_batch_write_median_s": round(statistics.median(latencies), 3),
            "other_batch_write_max_s": round(max(latencies), 3)}


def put_stall(session: Session) -> dict:
    with session.raw(session.cluster.url) as s:
        s.sendall(f"PUT /files/attack/stalled HTTP/1.1\r\nHost: x\r\nAuthorization: {session.basic()}\r\n"
                  f"Content-Length: {8 << 20}\r\n\r\n".encode() + b"s" * (2 << 20))
        started = time.monotonic()
        line = first_line(s)
        waited = time.monotonic() - started
    return {"answer": line, "answered_after_s": round(waited, 1)}


def head_flood(session: Session) -> dict:
    with session.raw(session.cluster.url) as s:
        send_all(s, [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"]
                 + [b"X-Flood-%d: %s\r\n" % (i, b"a" * 100_000) for i in range(200)] + [b"\r\n"])
        return {"answer": first_line(s)}


def slowloris(session: Session) -> dict:
    stop = threading.Event()
    conns = []
    for _ in range(300):
        s = session.raw(session.cluster.url)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        conns.append(s)

    def trickle() -> None:
        i = 0
        while not stop.is_set():
            for s in conns:
                try:
                    s.sendall(b"X-%d: y\r\n" % i)
                except OSError:
                    pass
            i += 1
            stop.wait(1.0)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    latencies, closed_at = [], None
    started = time.monotonic()
    try:
        for _ in range(10):
            t = time.monotonic()
            session.http.get("/healthz").raise_for_status()
            latencies.append(time.monotonic() - t)
            time.sleep(0.5)
        deadline = started + GIVE_UP
        for s in conns:  # how long the server keeps a trickling connection
            s.settimeout(max(0.1, deadline - time.monotonic()))
            first_line(s)
        closed_at = time.monotonic() - started
    finally:
        stop.set()
        for s in conns:
            s.close()
    return {"healthz_median_s": round(statistics.median(latencies), 4),
            "all_trickling_closed_after_s": round(min(closed_at, GIVE_UP), 1)}


RUN = {"batch-read": batch_read, "txn-body": txn_body, "batch-stall": batch_stall, "put-stall": put_stall,
       "head-flood": head_flood, "slowloris": slowloris}


def run_one(name: str, workdir: Path) -> dict:
    cluster = start_cluster(workdir / name, {})
    try:
        session = Session(cluster)
        session.http.get("/files/none")  # warm up the user app's pools
        before = memory(cluster, "VmRSS")
        outcome = RUN[name](session)
        peak = memory(cluster, "VmHWM")
        return {"attack": name, "outcome": outcome,
                "rss_mib": {svc: {"before": before[svc], "peak": peak[svc]} for svc in before}}
    finally:
        cluster.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(ATTACKS)}")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args(argv)
    selected = [a for a in args.only.split(",") if a] or ATTACKS
    results = []
    with tempfile.TemporaryDirectory(prefix="ringfs-attacks-") as tmp:
        for name in selected:
            result = run_one(name, Path(tmp))
            results.append(result)
            services = ", ".join(f"{svc} {m['before']}->{m['peak']}" for svc, m in result["rss_mib"].items()
                                 if svc in ("leader", "user_app_1") or m["peak"] - m["before"] > 20)
            print(f"{name:12} {json.dumps(result['outcome'])}\n{'':12} RSS MiB before->peak: {services}", flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps({"cwd": os.getcwd(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
