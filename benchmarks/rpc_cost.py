"""What one internal RPC costs, end to end, in CPU: ``python -m benchmarks.rpc_cost [--calls 3000]
[--repeat 3]``.

Issue 11, lever 3 ("cheaper internal calls"). Each case makes ``--calls`` sequential calls over one
keep-alive connection with the services' own client (``shared.rpc.transport.Transport``: aiohttp, the
cluster signature on every call) and reports the CPU per call of the server process (psutil, user+sys)
and of the calling process (``resource.getrusage``), median of ``--repeat`` runs. The cases peel the
stack apart:

* ``floor_raw`` / ``floor_starlette`` / ``floor_fastapi``: a process serving one empty endpoint as a raw
  ASGI callable, a Starlette ``Route`` and a FastAPI route, under uvicorn with httptools and uvloop
  (as ``shared.serve`` runs every service). The difference is the framework's routing.
* ``cs_healthz``: the chunk server's ``GET /healthz``: its whole middleware stack, no auth, no work.
* ``cs_exists_1``: ``POST /chunks/exists`` with one digest: the stack, the signature check, one store
  lookup: the cheapest real internal RPC.
* ``cs_read_1``: ``POST /chunks/read`` of one committed 10 KiB chunk.
* ``leader_manifest``: the leader's ``GET /manifest`` of a 1-chunk file (its manifest cache is warm).

Run on a quiet machine; CPU per call is steadier than calls per second on a shared one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

FLOORS = ("raw", "starlette", "fastapi")


# ------------------------------------------------------------------ the floor apps (served in a child)


def floor_app(kind: str):
    """One empty ``GET /ping`` endpoint answering ``ok`` with the framework ``kind``."""
    if kind == "raw":
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
        return app
    if kind == "starlette":
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        async def ping(request):
            return Response(b"ok", media_type="text/plain")
        return Starlette(routes=[Route("/ping", ping)])
    from fastapi import FastAPI
    from fastapi.responses import Response as FResponse

    app = FastAPI()

    @app.get("/ping")
    async def ping():
        return FResponse(b"ok", media_type="text/plain")
    return app


def serve_floor(kind: str, port: int) -> None:
    import uvicorn
    uvicorn.run(floor_app(kind), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")


# ------------------------------------------------------------------ measuring


async def _calls(transport, method: str, url: str, n: int, body: bytes | None, content_type: str | None) -> None:
    for _ in range(n):
        await transport.call(method, url, peer="bench", body=body, content_type=content_type)


def _client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(transport, loop, proc: psutil.Process, method: str, url: str, n: int, body: bytes | None = None,
            content_type: str | None = None) -> tuple[float, float]:
    """(server µs of CPU per call, client µs per call) over ``n`` sequential calls."""
    loop.run_until_complete(_calls(transport, method, url, 50, body, content_type))  # warm up
    s0, c0 = sum(proc.cpu_times()[:2]), _client_cpu()
    loop.run_until_complete(_calls(transport, method, url, n, body, content_type))
    s1, c1 = sum(proc.cpu_times()[:2]), _client_cpu()
    return (s1 - s0) / n * 1e6, (c1 - c0) / n * 1e6


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rpc_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--serve-floor", choices=FLOORS, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_floor:
        serve_floor(args.serve_floor, args.port)
        return

    from shared.rpc.transport import Transport
    from user_app.client.local_cluster import LocalCluster, free_port, wait_until, http_ok
    from user_app.client import Client

    results: dict[str, list[tuple[float, float]]] = {}
    loop = asyncio.new_event_loop()
    data = Path(tempfile.mkdtemp(prefix="ringfs-rpc-cost-"))
    cluster = LocalCluster(data_dir=data, chunk_servers=3, user_apps=1, replication=3, env={"LOG_LEVEL": "WARNING"})
    floors: list[subprocess.Popen] = []
    try:
        cluster.start()
        transport = Transport(30.0, cluster.signer().key)  # the cluster's RPC key, as every service signs
        blob = os.urandom(10 * 1024)
        with Client(cluster.url, credentials=cluster.credentials_file) as client:
            client.put("rpc-cost/one.bin", blob, chunk_size=16 * 1024)
        digest = hashlib.sha256(blob).digest()
        cs, leader = cluster.servers[0], cluster.leader
        cases: list[tuple[str, psutil.Process, str, str, bytes | None, str | None]] = []
        for kind in FLOORS:
            port = free_port()
            floors.append(subprocess.Popen([sys.executable, "-m", "benchmarks.rpc_cost", "--serve-floor", kind,
                                            "--port", str(port)]))
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_ok(url + "/ping"), 30, what=f"{kind} floor app")
            cases.append((f"floor_{kind}", psutil.Process(floors[-1].pid), "GET", url + "/ping", None, None))
        cases += [
            ("cs_healthz", psutil.Process(cs.pid), "GET", cs.url + "/healthz", None, None),
            ("cs_exists_1", psutil.Process(cs.pid), "POST", cs.url + "/chunks/exists", digest,
             "application/octet-stream"),
            ("cs_read_1", psutil.Process(cs.pid), "POST", cs.url + "/chunks/read", digest, "application/octet-stream"),
            ("leader_manifest", psutil.Process(leader.pid), "GET",
             leader.url + "/manifest?path=rpc-cost/one.bin", None, None),
        ]
        for rep in range(args.repeat):
            for name, proc, method, url, body, ctype in cases:
                results.setdefault(name, []).append(measure(transport, loop, proc, method, url, args.calls, body, ctype))
            print(f"[rpc_cost] repetition {rep + 1}/{args.repeat} done", file=sys.stderr)
        loop.run_until_complete(transport.aclose())
    finally:
        for f in floors:
            f.terminate()
            f.wait(10)
        cluster.stop()
    print(f"CPU per internal RPC, µs (median of {args.repeat} x {args.calls} sequential calls, aiohttp client)")
    print(f"{'case':<18} {'server':>8} {'client':>8} {'total':>8}")
    for name, runs in results.items():
        server = statistics.median(r[0] for r in runs)
        client = statistics.median(r[1] for r in runs)
        print(f"{name:<18} {server:>8.0f} {client:>8.0f} {server + client:>8.0f}")


if __name__ == "__main__":
    main()
