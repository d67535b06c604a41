"""The ``ringfs`` commands about the cluster rather than files: ``up`` (a local cluster under a supervisor),
``server add``, ``status``, ``fsck`` and ``key``. Registered on the app of ``cli_common`` when ``cli`` (the
entry point) imports this module."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from user_app.client.cli_common import (
    BytesOption, DataDirOption, JsonOption, UrlOption, api_get, app, client_for, fail, out, print_json,
    print_table, run, size, table, warn, when,
)

FSCK_ROWS = 20  # problem rows ``fsck`` prints without --all


@app.command()
def status(as_json: bool = JsonOption, raw_bytes: bool = BytesOption, url: str = UrlOption) -> None:
    """Show the cluster: chunk servers, their state and ring share, the policy."""

    def body() -> None:
        with client_for(url) as client:
            c = api_get(client, "/cluster")
        if as_json:
            print_json(c)
            return
        leaders = c.get("leaders", [])
        for leader in leaders if len(leaders) > 1 else []:  # standby leaders: who is active, and the term
            term = f", term {leader['term']}" if leader.get("term") is not None else ""
            out.print(f"leader {leader['url']}: {leader['role'] or 'not answering'}{term}", highlight=False)
        out.print(f"ring epoch {c['epoch']}, replication factor {c['replication_factor']}, "
                  f"chunk size {size(c['chunk_size'], raw_bytes)}", highlight=False)
        t = table("server", "url", "state", "ring share", "chunks", "data", "disk", "missed checks",
                  right=("chunks", "data", "disk", "missed checks"))
        total = sum(s["virtual_nodes"] for s in c["servers"]) or 1
        for s in c["servers"]:
            t.add_row(s["server_id"], s["url"], s["state"],
                      f"{100 * s['virtual_nodes'] / total:.0f}% ({s['virtual_nodes']} vnodes)",
                      "?" if s.get("chunks") is None else str(s["chunks"]), size(s.get("bytes"), raw_bytes),
                      size(s.get("disk_bytes"), raw_bytes), str(s.get("missed_checks", 0)))
        print_table(t)

    run(body)


@app.command()
def fsck(as_json: bool = JsonOption,
         show_all: bool = typer.Option(False, "--all", help=f"Every problem row, not only the first {FSCK_ROWS}."),
         url: str = UrlOption) -> None:
    """Check that every chunk of every live and trashed file has its copies; exit 1 when any chunk is
    under-replicated or lost. A summary first, then the worst files (lost chunks first)."""
    report: dict = {}

    def body() -> None:
        with client_for(url) as client:
            report.update(client.fsck())
        if as_json:
            print_json(report)
            return
        verdict = "[green]OK[/green]" if report["ok"] else "[red]PROBLEMS[/red]"
        problems = sorted(report["problems"], key=lambda p: (-p["lost"], -p["under_replicated"], -p["misplaced"],
                                                             p["path"], p["version"]))
        out.print(f"fsck {verdict}: {report['files']} files, {report['chunks']} chunks, "
                  f"replication factor {report['replication_factor']}", highlight=False)
        out.print(f"  under-replicated {report['under_replicated']} chunks, lost {report['lost']}, "
                  f"misplaced {report['misplaced']}; {len(problems)} files with problems", highlight=False)
        for u in report.get("unreachable", []):
            out.print(Text.assemble("  ", ("unreachable:", "yellow"), f" {u}"))
        if not problems:
            return
        shown = problems if show_all else problems[:FSCK_ROWS]
        t = table("path", "version", "state", "under-replicated", "lost", "misplaced",
                  right=("version", "under-replicated", "lost", "misplaced"))
        for p in shown:
            t.add_row(Text(p["path"]), str(p["version"]), p.get("state", ""), str(p["under_replicated"]),
                      str(p["lost"]), str(p["misplaced"]))
        print_table(t)
        if len(shown) < len(problems):
            out.print(f"... and {len(problems) - len(shown)} more files with problems (ringfs fsck --all lists them)",
                      highlight=False)

    run(body)
    if report.get("under_replicated") or report.get("lost"):
        raise typer.Exit(1)


key_app = typer.Typer(no_args_is_help=True, help="Access keys (an admin key is needed).")
app.add_typer(key_app, name="key")


@key_app.command("create")
def key_create(name: str = typer.Argument(..., help="What the key is for, e.g. 'backup job'."),
               read: list[str] = typer.Option([], "--read", help="A path prefix it may read (repeatable)."),
               write: list[str] = typer.Option([], "--write", help="A path prefix it may write, and read (repeatable)."),
               admin: bool = typer.Option(False, "--admin", help="Also cluster views and key management."),
               url: str = UrlOption) -> None:
    """Create a key; its secret is shown this once."""

    def body() -> None:
        grants = [{"prefix": p, "access": "read"} for p in read] + [{"prefix": p, "access": "write"} for p in write]
        with client_for(url) as client:
            key = client.create_key(name, grants, admin)
        out.print(f"access key {key['access_key']}\nsecret key {key['secret_key']}\n"
                  "(the secret is not shown again: keep it now)", highlight=False, markup=False)

    run(body)


@key_app.command("ls")
def key_ls(url: str = UrlOption) -> None:
    """List the keys and their grants (no secrets)."""

    def body() -> None:
        with client_for(url) as client:
            keys = client.keys()
        t = table("access key", "name", "admin", "grants", "created")
        for k in keys:
            grants = ", ".join(f"{g['access']} {g['prefix'] or '(everything)'}" for g in k["grants"]) or "-"
            t.add_row(k["access_key"], Text(k["name"]), "yes" if k["admin"] else "", Text(grants), when(k["created_at"]))
        print_table(t)

    run(body)


@key_app.command("rm")
def key_rm(access_key: str, url: str = UrlOption) -> None:
    """Delete a key (other user apps honour it within KEY_CACHE_TTL seconds)."""

    def body() -> None:
        with client_for(url) as client:
            client.delete_key(access_key)

    run(body)


server_app = typer.Typer(no_args_is_help=True, help="Chunk servers of the local cluster `ringfs up` runs.")
app.add_typer(server_app, name="server")


@server_app.command("add")
def server_add(data_dir: Path = DataDirOption,
               port: int = typer.Option(0, "--port", help="Its port (default: the one after the last chunk server's)."),
               timeout: float = typer.Option(90.0, "--timeout", help="Seconds to wait for it to be healthy.")) -> None:
    """Add a chunk server to the cluster `ringfs up` runs with this data dir; wait until it is healthy on
    the ring.

    How: `ringfs up` keeps its PID in DATA_DIR/ringfs-up.pid and looks into DATA_DIR/requests/ every
    0.2 s. This command leaves a request file there and waits for the answer, which comes once the new
    server is healthy on the ring (or says why not: a port in use, a server that exited). From then on
    `ringfs up` supervises the new server like the others. It runs until `ringfs up` stops; give
    `ringfs up --chunk-servers N` to start N the next time.
    """
    from user_app.client.up_control import request_add_chunk_server

    try:
        r = request_add_chunk_server(data_dir, port=port, timeout=timeout)
    except (RuntimeError, OSError, ValueError) as exc:
        fail(str(exc))
    out.print(Text(f"added {r['name']} {r['url']}: pid {r['pid']}, log {r['log']}; "
                   f"{r['healthy']} healthy chunk servers on the ring"))


@app.command()
def up(chunk_servers: int = typer.Option(4, "--chunk-servers", help="How many chunk servers (at least "
                                         "replication + 1, so that one down still leaves full replication)."),
       replication: int = typer.Option(3, "--replication", help="Replication factor."),
       data_dir: Path = DataDirOption,
       database_url: str = typer.Option("", "--database-url", help="Leader database (default SQLite)."),
       leaders: int = typer.Option(1, "--leaders", help="Leader processes: more than one runs standby leaders, "
                                   "which need a PostgreSQL --database-url."),
       port: int = typer.Option(8010, "--port", help="User app port."),
       s3_port: int = typer.Option(8333, "--s3-port", help="The user app's S3 API port (0: no S3 API)."),
       leader_port: int = typer.Option(8000, "--leader-port", help="Leader port."),
       chunk_server_port: int = typer.Option(8100, "--chunk-server-port",
                                             help="First chunk server port (the others follow it)."),
       host: str = typer.Option("127.0.0.1", "--host", help="Address every service binds (0.0.0.0: all)."),
       tls: bool = typer.Option(False, "--tls", help="Serve every service over HTTPS with a private CA made in "
                                "DATA_DIR/tls.")) -> None:
    """Start a whole cluster on this machine (leader, chunk servers, user app) and supervise it: a service
    that exits is restarted (1 s, doubling to 30 s), `ringfs server add` adds a chunk server, Ctrl-C (or
    SIGTERM) stops everything. The first start in a data dir makes its cluster secret and a root access key
    there."""
    from shared.config import UserAppSettings
    from user_app.client.local_cluster import LocalCluster
    from user_app.client.supervisor import StartError, Supervisor

    if chunk_servers < 1 or replication < 1 or leaders < 1:
        fail("--chunk-servers, --replication and --leaders must be at least 1")
    if leaders > 1 and not database_url.startswith("postgresql"):
        fail("--leaders above 1 needs a PostgreSQL --database-url (postgresql+asyncpg://...): SQLite has one leader")
    cluster = LocalCluster(data_dir=data_dir, chunk_servers=chunk_servers, replication=replication,
                           database_url=database_url, leaders=leaders, leader_port=leader_port, user_app_port=port,
                           s3_port=s3_port, env={"S3_PORT": str(s3_port)} if s3_port == 0 else {},
                           chunk_server_base_port=chunk_server_port, host=host, tls=tls)
    if chunk_servers < replication:
        warn(f"{chunk_servers} chunk servers for replication factor {replication}: every write gets fewer than "
             f"{replication} copies (give --chunk-servers {replication + 1} or more)")
    elif chunk_servers == replication:
        warn(f"{chunk_servers} chunk servers for replication factor {replication}: with one of them down, new "
             f"writes get fewer than {replication} copies (--chunk-servers {replication + 1} or more avoids it)")
    out.print(Text(f"starting RingFS: {chunk_servers} chunk servers, replication factor {replication}, "
                   f"data and logs under {Path(data_dir).resolve()}"))

    def ready() -> None:
        out.print(Text(f"RingFS is up. Talk to the user app at {cluster.url} (ringfs put/get --url {cluster.url})"))
        if cluster.s3_url():
            region = UserAppSettings.model_fields["s3_region"].default
            out.print(Text(f"  S3 endpoint   {cluster.s3_url()} (region {region}, path-style or virtual-host; "
                           "sign with an access key: README \"S3\")"))
        out.print(Text(f"  web page      {cluster.url}/ (log in with an access key and its secret)"))
        out.print(Text(f"  WebDAV        {cluster.url}/dav/ (HTTP Basic with an access key: README \"WebDAV\")"))
        if cluster.root is not None:
            if cluster.new_root:
                out.print(Text(f"  root key      {cluster.root.access_key}  secret {cluster.root.secret_key}  "
                               "(shown once)"))
            out.print(Text(f"  credentials   {cluster.credentials_file} (mode 0600; ringfs commands run here "
                           "find them)"))
        if cluster.ca_file is not None:
            out.print(Text(f"  TLS CA        {cluster.ca_file} (ringfs commands run here trust it)"))
        out.print("Ctrl-C stops everything; `ringfs server add` adds a chunk server.", highlight=False)

    try:
        Supervisor(cluster, lambda line: out.print(Text(line)), lambda line: warn(line), ready).run()
    except StartError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. TLS setup failed: one line, never a traceback
        fail(f"ringfs up failed: {type(exc).__name__}: {exc}")
