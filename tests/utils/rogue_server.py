"""A lying cluster member, for the trust tests: it holds the cluster secret, registers any number of server
ids (all served by one HTTP server, each under a path prefix of its advertise URL), passes every health
check with each id's key, and claims to hold every chunk, while it stores nothing.

Run it as its own process, so a test can ``kill -9`` it as it would a real server:
``python -m tests.utils.rogue_server LEADER_URL PORT COUNT`` registers COUNT ids, prints one JSON line
``{"codes": [...]}``, then serves until killed.

* ``/chunks/exists``: "committed" for every digest; ``/chunks/prove``: bytes that prove nothing;
* ``/chunks/replicate``, ``/chunks/prepare``, ``/chunks/prepare-many``, ``/chunks/commit``: accepted and
  thrown away, with counts that claim success; ``/chunks/read``: nothing held.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from shared.auth.server_identity import health_proof
from shared.protocol.frames import MISSING, U32, iter_txn_sections
from shared.protocol.rules import HEALTH_CHECK_HEADER
from tests.utils.auth import TestAuth


class RogueMember:
    """``start()``, ``register(n)`` (n more server ids), ``stop()``."""

    def __init__(self, leader_url: str, port: int) -> None:
        self.leader_url, self.port = leader_url, port
        self.keys: dict[str, bytes] = {}  # server id -> its key, from the leader
        self.requests: dict[str, int] = {}  # endpoint -> how many times it was called
        rogue = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real chunk server

            def log_message(self, *args) -> None:  # quiet
                pass

            def _route(self) -> tuple[str, str]:
                _, prefix, rest = self.path.split("/", 2)
                return f"rogue-{prefix}", "/" + rest.split("?", 1)[0]

            def _answer(self, status: int, body: bytes, ctype: str = "application/octet-stream") -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                server_id, path = self._route()
                rogue.requests[path] = rogue.requests.get(path, 0) + 1
                if path == "/healthz":
                    answer = {"status": "ok", "server_id": server_id}
                    challenge = self.headers.get(HEALTH_CHECK_HEADER)
                    if challenge and server_id in rogue.keys:
                        answer["proof"] = health_proof(rogue.keys[server_id], server_id, challenge)
                    return self._answer(200, json.dumps(answer).encode(), "application/json")
                if path == "/rogue-requests":  # for the test: what it was asked
                    return self._answer(200, json.dumps(rogue.requests).encode(), "application/json")
                if path == "/stats":
                    return self._answer(200, json.dumps({"chunks": 10**9, "bytes": 10**12}).encode(), "application/json")
                self._answer(404, b'{"error": "no"}', "application/json")

            def do_POST(self) -> None:  # noqa: N802
                _, path = self._route()
                rogue.requests[path] = rogue.requests.get(path, 0) + 1
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if path == "/chunks/exists":
                    return self._answer(200, bytes([2]) * (len(body) // 32))
                if path == "/chunks/prove":
                    return self._answer(200, os.urandom(len(body) - 32))
                if path == "/chunks/read":
                    return self._answer(200, b"".join(body[i:i + 32] + U32.pack(MISSING) for i in range(0, len(body), 32)))
                if path == "/chunks/replicate":
                    return self._answer(200, b'{"stored": 1}', "application/json")
                if path == "/chunks/prepare":
                    return self._answer(200, b'{"stored": 100000, "already_committed": 0}', "application/json")
                if path == "/chunks/prepare-many":
                    sections = [{"stored": 100000, "already_committed": 0} for _ in iter_txn_sections(body)]
                    return self._answer(200, json.dumps({"results": {}, "sections": sections}).encode(),
                                        "application/json")
                if path in ("/chunks/commit", "/chunks/abort"):
                    ids = json.loads(body or b"{}").get("txn_ids", [])
                    key = "committed" if path.endswith("commit") else "aborted"
                    return self._answer(200, json.dumps({key: {t: 100000 for t in ids}}).encode(), "application/json")
                self._answer(404, b'{"error": "no"}', "application/json")

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # 61 ids checked at once: the default backlog of 5 would drop most
            daemon_threads = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "RogueMember":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def register(self, count: int) -> list[int]:
        """Register ``count`` more server ids with the leader; each answer's status code."""
        codes = []
        with httpx.Client(auth=TestAuth(basic=None), timeout=10) as http:
            for _ in range(count):
                n = len(self.keys)
                server_id = f"rogue-r{n}"
                r = http.post(self.leader_url + "/servers", json={
                    "server_id": server_id, "advertise_url": f"http://127.0.0.1:{self.port}/r{n}",
                    "capacity_bytes": 10**12})
                codes.append(r.status_code)
                if r.status_code == 200 and r.json().get("server_key"):
                    self.keys[server_id] = bytes.fromhex(r.json()["server_key"])
                else:
                    self.keys[server_id] = b""
        return codes


def main() -> None:
    import sys

    leader_url, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rogue = RogueMember(leader_url, port).start()
    print(json.dumps({"codes": rogue.register(count)}), flush=True)
    rogue.thread.join()


if __name__ == "__main__":
    main()
