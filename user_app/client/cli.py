"""``ringfs``: run a local cluster and move files in and out of RingFS.

Every command that talks to RingFS takes ``--url`` (default ``http://127.0.0.1:8010``, or
``$RINGFS_URL``). Errors are one line on stderr and exit status 1; never a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import typer
from rich import filesize
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from user_app.client import transfer
from user_app.client.client import DEFAULT_URL, Client, ClientError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="RingFS: a GFS-style distributed file system.")
# Output that is not a terminal (a pipe, a file, grep) is never wrapped: lines stay whole for scripts.
NO_WRAP_WIDTH = 100_000
out = Console(width=None if sys.stdout.isatty() else NO_WRAP_WIDTH, soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, width=None if sys.stderr.isatty() else NO_WRAP_WIDTH, soft_wrap=not sys.stderr.isatty())

UrlOption = typer.Option(DEFAULT_URL, "--url", envvar="RINGFS_URL", help="User app URL.")
# Set by the app callback from the global options (--access-key, --secret-key, --credentials, --ca-file).
_connection: dict = {}


@app.callback()
def _global_options(
        access_key: Optional[str] = typer.Option(None, "--access-key", help="Access key id (or RINGFS_ACCESS_KEY)."),
        secret_key: Optional[str] = typer.Option(None, "--secret-key", help="Secret key (or RINGFS_SECRET_KEY)."),
        credentials: Optional[Path] = typer.Option(None, "--credentials",
                                                   help="Credentials file (default ./ringfs-data/credentials)."),
        ca_file: Optional[Path] = typer.Option(None, "--ca-file", envvar="RINGFS_CA_FILE",
                                               help="CA to trust for https:// (default ./ringfs-data/tls/ca.pem).")) -> None:
    """RingFS: a GFS-style distributed file system. Credentials are looked for in --access-key and
    --secret-key, then RINGFS_ACCESS_KEY and RINGFS_SECRET_KEY, then the credentials file."""
    _connection.update(access_key=access_key, secret_key=secret_key, credentials=credentials,
                       ca_file=str(ca_file) if ca_file else None)


def _client(url: str) -> Client:
    """A client of ``url`` with the credentials and CA the global options (or their defaults) name."""
    return Client(url, **_connection)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _progress(total: int, enabled: bool) -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=err, disable=not enabled, transient=True)


def _run(fn: Callable[[], None]) -> None:
    try:
        fn()
    except ClientError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename}" if getattr(exc, "filename", None) else str(exc))


def _copy_tree(plan: transfer.Plan, url: str, jobs: int, label: str) -> None:
    """Run a tree copy; print one line per failed file as it happens and exit 1 at the end if any failed
    (the rest still copies). The progress bar and the summary show on a terminal only."""
    show = err.is_terminal
    started = time.monotonic()
    with _progress(plan.files, show) as progress:
        task = progress.add_task(label, total=None)

        def on_result(result: transfer.UnitResult) -> None:
            for line in result.errors:
                progress.console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
            progress.update(task, advance=result.bytes)

        total = transfer.run_units(plan, lambda: _client(url), jobs, on_result)
    secs = max(time.monotonic() - started, 1e-9)
    if show:
        err.print(f"{label}: {total.files} files, {total.bytes} bytes in {secs:.2f}s ({total.files / secs:.0f} files/s)"
                  + (f", {len(total.errors)} failed" if total.errors else ""))
    if total.errors:
        raise typer.Exit(1)


@app.command()
def put(local: Path = typer.Argument(..., help="Local file, or folder with -r."),
        remote: str = typer.Argument(..., help="Path in RingFS (folder with -r)."),
        recursive: bool = typer.Option(False, "-r", "--recursive", help="Copy a whole folder tree."),
        create_only: bool = typer.Option(False, "--create-only", help="Fail if the path exists."),
        chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Chunk size in bytes for this upload."),
        jobs: int = typer.Option(transfer.DEFAULT_JOBS, "-j", "--jobs", help="Parallel transfers for -r."),
        url: str = UrlOption) -> None:
    """Upload a file (or a tree with -r)."""

    def run() -> None:
        if recursive:
            if not local.is_dir():
                _fail(f"{local} is not a folder")
            _copy_tree(transfer.plan_upload(local, remote, create_only=create_only, chunk_size=chunk_size),
                       url, jobs, "put")
            return
        if local.is_dir():
            _fail(f"{local} is a folder: use -r")
        size = local.stat().st_size
        with _client(url) as client, _progress(size, err.is_terminal and size > 8 << 20) as progress:
            task = progress.add_task(remote, total=size)
            with open(local, "rb") as f:
                result = client.put(remote, f, create_only=create_only, chunk_size=chunk_size,
                                    progress=lambda n: progress.update(task, advance=n))
        out.print(f"{result['path']} version {result['version']}: {result['size']} bytes, sha256 {result['sha256']}",
                  highlight=False)

    _run(run)


@app.command()
def get(remote: str = typer.Argument(..., help="Path in RingFS (folder with -r)."),
        local: Path = typer.Argument(..., help="Local file, or folder with -r; '-' writes to stdout."),
        recursive: bool = typer.Option(False, "-r", "--recursive", help="Copy a whole folder tree."),
        version: Optional[int] = typer.Option(None, "--version", help="Read an older version."),
        jobs: int = typer.Option(transfer.DEFAULT_JOBS, "-j", "--jobs", help="Parallel transfers for -r."),
        url: str = UrlOption) -> None:
    """Download a file (or a tree with -r)."""

    def run() -> None:
        with _client(url) as client:
            if recursive:
                plan = transfer.plan_download(client, remote, local)
            elif str(local) == "-":
                for block in client.iter_bytes(remote, version=version):
                    sys.stdout.buffer.write(block)
                return
            else:
                size = client.stat(remote, version=version)["size"]
                with _progress(size, err.is_terminal and size > 8 << 20) as progress:
                    task = progress.add_task(remote, total=size)
                    client.get_file(remote, local, version=version,
                                    progress=lambda n: progress.update(task, advance=n))
                return
        _copy_tree(plan, url, jobs, "get")

    _run(run)


@app.command()
def ls(folder: str = typer.Argument("", help="Folder (default: the root)."),
       recursive: bool = typer.Option(False, "-r", "--recursive"),
       url: str = UrlOption) -> None:
    """List a folder: files with size and version, and sub-folders."""

    def run() -> None:
        with _client(url) as client:
            entries = client.ls(folder, recursive=recursive)
        table = Table(box=None, show_header=out.is_terminal)
        for col in ("type", "size", "version", "name"):
            table.add_column(col, justify="right" if col in ("size", "version") else "left")
        for e in entries:
            table.add_row(e["type"], str(e["size"]), str(e.get("version") or ""),
                          e["path"] if recursive else e["name"] + ("/" if e["type"] == "dir" else ""))
        out.print(table)

    _run(run)


@app.command()
def stat(path: str, version: Optional[int] = typer.Option(None, "--version"), url: str = UrlOption) -> None:
    """Show a file's metadata."""

    def run() -> None:
        with _client(url) as client:
            for k, v in client.stat(path, version=version).items():
                out.print(f"{k:12} {v}", highlight=False)

    _run(run)


@app.command()
def versions(path: str, url: str = UrlOption) -> None:
    """List a file's versions."""

    def run() -> None:
        with _client(url) as client:
            for v in client.versions(path):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["created_at"]))
                out.print(f"{v['version']:>5}  {v['size']:>12}  {when}  {v['sha256']}", highlight=False)

    _run(run)


@app.command()
def rm(path: str, url: str = UrlOption) -> None:
    """Delete a file."""

    def run() -> None:
        with _client(url) as client:
            client.rm(path)

    _run(run)


@app.command()
def mv(src: str, dst: str, url: str = UrlOption) -> None:
    """Rename a file or a folder."""

    def run() -> None:
        with _client(url) as client:
            client.mv(src, dst)

    _run(run)


@app.command()
def undelete(path: str, url: str = UrlOption) -> None:
    """Restore a deleted file from the trash (its most recent delete)."""

    def run() -> None:
        with _client(url) as client:
            st = client.undelete(path)
        out.print(f"{st['path']} restored: version {st['version']}, {st['size']} bytes", highlight=False)

    _run(run)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts is not None else "-"


@app.command()
def trash(url: str = UrlOption) -> None:
    """List deleted files that can still be restored, and when they expire."""

    def run() -> None:
        with _client(url) as client:
            entries = client.trash()
        if not entries:
            out.print("the trash is empty")
            return
        table = Table(box=None, show_header=out.is_terminal)
        for col in ("path", "size", "versions", "deleted", "expires"):
            table.add_column(col, justify="right" if col in ("size", "versions") else "left")
        for e in entries:
            table.add_row(e["path"], str(e["size"]), str(e["versions"]), _when(e["deleted_at"]), _when(e["expires_at"]))
        out.print(table)

    _run(run)


@app.command()
def fsck(as_json: bool = typer.Option(False, "--json", help="Print the raw JSON report."),
         url: str = UrlOption) -> None:
    """Check that every chunk of every live and trashed file has its copies; exit 1 when any chunk is
    under-replicated or lost."""
    report: dict = {}

    def run() -> None:
        with _client(url) as client:
            report.update(client.fsck())
        if as_json:
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            return
        verdict = "[green]OK[/green]" if report["ok"] else "[red]PROBLEMS[/red]"
        out.print(f"fsck {verdict}: {report['files']} files, {report['chunks']} chunks, "
                  f"replication factor {report['replication_factor']}")
        out.print(f"  under-replicated {report['under_replicated']}, lost {report['lost']}, "
                  f"misplaced {report['misplaced']}", highlight=False)
        for u in report.get("unreachable", []):
            out.print(f"  [yellow]unreachable:[/yellow] {u}", highlight=False)
        if report["problems"]:
            table = Table()
            for col in ("path", "version", "state", "under-replicated", "lost", "misplaced"):
                table.add_column(col, justify="left" if col in ("path", "state") else "right")
            for p in report["problems"]:
                table.add_row(p["path"], str(p["version"]), p.get("state", ""), str(p["under_replicated"]),
                              str(p["lost"]), str(p["misplaced"]))
            out.print(table)

    _run(run)
    if report.get("under_replicated") or report.get("lost"):
        raise typer.Exit(1)


@app.command()
def status(url: str = UrlOption) -> None:
    """Show the cluster: chunk servers, their state and ring share, the policy."""

    def run() -> None:
        with _client(url) as client:
            c = client.cluster()
        out.print(f"ring epoch {c['epoch']}, replication factor {c['replication_factor']}, "
                  f"chunk size {c['chunk_size']} bytes", highlight=False)
        table = Table()
        for col in ("server", "url", "state", "ring share", "chunks", "data", "disk", "missed checks"):
            table.add_column(col, justify="right" if col in ("chunks", "data", "disk") else "left")
        total = sum(s["virtual_nodes"] for s in c["servers"]) or 1

        def size(n) -> str:
            return "?" if n is None else filesize.decimal(n)

        for s in c["servers"]:
            table.add_row(s["server_id"], s["url"], s["state"],
                          f"{100 * s['virtual_nodes'] / total:.0f}% ({s['virtual_nodes']} vnodes)",
                          "?" if s.get("chunks") is None else str(s["chunks"]), size(s.get("bytes")),
                          size(s.get("disk_bytes")), str(s.get("missed_checks", 0)))
        out.print(table)

    _run(run)


key_app = typer.Typer(no_args_is_help=True, help="Access keys (an admin key is needed).")
app.add_typer(key_app, name="key")


@key_app.command("create")
def key_create(name: str = typer.Argument(..., help="What the key is for, e.g. 'backup job'."),
               read: list[str] = typer.Option([], "--read", help="A path prefix it may read (repeatable)."),
               write: list[str] = typer.Option([], "--write", help="A path prefix it may write, and read (repeatable)."),
               admin: bool = typer.Option(False, "--admin", help="Also cluster views and key management."),
               url: str = UrlOption) -> None:
    """Create a key; its secret is shown this once."""

    def run() -> None:
        grants = [{"prefix": p, "access": "read"} for p in read] + [{"prefix": p, "access": "write"} for p in write]
        with _client(url) as client:
            key = client.create_key(name, grants, admin)
        out.print(f"access key {key['access_key']}\nsecret key {key['secret_key']}\n"
                  "(the secret is not shown again: keep it now)", highlight=False)

    _run(run)


@key_app.command("ls")
def key_ls(url: str = UrlOption) -> None:
    """List the keys and their grants (no secrets)."""

    def run() -> None:
        with _client(url) as client:
            keys = client.keys()
        table = Table(box=None, show_header=True)
        for col in ("access key", "name", "admin", "grants", "created"):
            table.add_column(col)
        for k in keys:
            grants = ", ".join(f"{g['access']} {g['prefix'] or '(everything)'}" for g in k["grants"]) or "-"
            table.add_row(k["access_key"], k["name"], "yes" if k["admin"] else "", grants, _when(k["created_at"]))
        out.print(table)

    _run(run)


@key_app.command("rm")
def key_rm(access_key: str, url: str = UrlOption) -> None:
    """Delete a key (other user apps honour it within KEY_CACHE_TTL seconds)."""

    def run() -> None:
        with _client(url) as client:
            client.delete_key(access_key)

    _run(run)


@app.command()
def up(chunk_servers: int = typer.Option(3, "--chunk-servers", help="How many chunk servers."),
       replication: int = typer.Option(3, "--replication", help="Replication factor."),
       data_dir: Path = typer.Option(Path("./ringfs-data"), "--data-dir", help="Where all data lives."),
       database_url: str = typer.Option("", "--database-url", help="Leader database (default SQLite)."),
       port: int = typer.Option(8010, "--port", help="User app port."),
       leader_port: int = typer.Option(8000, "--leader-port", help="Leader port."),
       chunk_server_port: int = typer.Option(8100, "--chunk-server-port", help="First chunk server port."),
       host: str = typer.Option("127.0.0.1", "--host", help="Address every service binds (0.0.0.0: all)."),
       tls: bool = typer.Option(False, "--tls", help="Serve every service over HTTPS with a private CA made in "
                                "<data dir>/tls.")) -> None:
    """Start a whole cluster on this machine (leader, chunk servers, user app); Ctrl-C stops it. The first
    start in a data dir makes its cluster secret and a root access key there."""
    from user_app.client.local_cluster import LocalCluster

    cluster = LocalCluster(data_dir=data_dir, chunk_servers=chunk_servers, replication=replication,
                           database_url=database_url, leader_port=leader_port, user_app_port=port,
                           chunk_server_base_port=chunk_server_port, host=host, tls=tls)
    stop = {"now": False}
    # Handle SIGINT explicitly too: a shell starts background jobs with SIGINT ignored, and Ctrl-C or
    # `kill -INT` must still stop the cluster cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    try:
        cluster.start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        cluster.stop()
        _fail(f"cluster did not start: {exc}")
    out.print(f"RingFS is up. Data and logs under {cluster.data_dir}")
    out.print(f"  leader        {cluster.leader_url}")
    for s in cluster.servers:
        out.print(f"  {s.name:13} {s.url}")
    out.print(f"  user app      {cluster.url}   <- talk to this one (ringfs put/get --url {cluster.url})")
    if cluster.root is not None:
        if cluster.new_root:
            out.print(f"  root key      {cluster.root.access_key}  secret {cluster.root.secret_key}  (shown once)",
                      highlight=False)
        out.print(f"  credentials   {cluster.credentials_file} (mode 0600; ringfs commands run here find them)",
                  highlight=False)
    if cluster.ca_file is not None:
        out.print(f"  TLS CA        {cluster.ca_file} (ringfs commands run here trust it)", highlight=False)
    out.print("Ctrl-C stops everything.")
    try:
        while not stop["now"]:
            time.sleep(0.5)
            dead = [s.name for s in cluster.services() if not s.alive]
            if dead:
                err.print(f"[yellow]warning:[/yellow] stopped: {', '.join(dead)} (see {cluster.data_dir}/logs)")
                stop["now"] = len(dead) == len(cluster.services())
                time.sleep(5)
    except KeyboardInterrupt:
        pass
    finally:
        out.print("stopping RingFS ...")
        cluster.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
