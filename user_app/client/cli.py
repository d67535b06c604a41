"""``ringfs``: run a local cluster and move files in and out of RingFS.

This module has the file commands (put, get, ls, stat, versions, rm, mv, undelete, trash);
``cli_admin`` has the cluster ones (up, server, status, fsck, key), ``cli_common`` what they share. Every
command that talks to RingFS takes ``--url`` (default ``http://127.0.0.1:8010``, or ``$RINGFS_URL``).
Errors are one line on stderr and exit status 1; never a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.progress import (BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeRemainingColumn, TransferSpeedColumn)
from rich.text import Text

from user_app.client import transfer
from user_app.client.cli_common import (
    BytesOption, JsonOption, UrlOption, api_get, app, client_for, err, fail, out, print_json, print_table,
    quote_path, run, size, table, warn, when,
)
from user_app.client.client import ClientError


def _progress(enabled: bool, files: int | None = None) -> Progress:
    columns = ["[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
               DownloadColumn(binary_units=True)]
    if files is not None:
        columns.append(TextColumn(f"{{task.fields[files]}}/{files} files"))
    columns += [TransferSpeedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err, disable=not enabled, transient=True)


def _tree(plan: transfer.Plan, url: str, jobs: int, label: str) -> transfer.UnitResult:
    """Run a tree operation; print its planning warnings, then one line per failed file as it happens
    (the rest still runs), and exit 1 at the end if any failed. The progress bar (its totals known up
    front) and the summary show on a terminal only."""
    for line in plan.warnings:
        warn(line)
    for line in plan.errors:
        err.print(Text.assemble(("error:", "red"), " ", line), highlight=False, soft_wrap=True)
    show = err.is_terminal
    started = time.monotonic()
    with _progress(show, plan.files) as progress:
        task = progress.add_task(label, total=plan.bytes, files=0)
        done = [0]  # files done (copied or failed), for the bar

        def on_result(result: transfer.UnitResult) -> None:
            for line in result.errors:
                progress.console.print(Text.assemble(("error:", "red"), " ", line), highlight=False, soft_wrap=True)
            done[0] += result.files + len(result.errors)
            progress.update(task, advance=result.bytes, files=done[0])

        total = transfer.run_units(plan, lambda: client_for(url), jobs, on_result)
    secs = max(time.monotonic() - started, 1e-9)
    failed = len(total.errors) + len(plan.errors)
    if show:
        err.print(f"{label}: {total.files} files, {size(total.bytes)} in {secs:.2f}s ({total.files / secs:.0f} files/s)"
                  + (f", {failed} failed" if failed else ""), highlight=False)
    if failed:
        raise typer.Exit(1)
    return total


@app.command()
def put(local: Path = typer.Argument(..., help="Local file, or folder with -r."),
        remote: str = typer.Argument(..., help="Path in RingFS (folder with -r)."),
        recursive: bool = typer.Option(False, "-r", "--recursive",
                                       help="Copy a whole folder tree (symlinks followed, loops skipped)."),
        create_only: bool = typer.Option(False, "--create-only", help="Fail if the path exists."),
        chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Chunk size in bytes for this upload."),
        jobs: int = typer.Option(transfer.DEFAULT_JOBS, "-j", "--jobs", help="Parallel transfers for -r."),
        raw_bytes: bool = BytesOption, url: str = UrlOption) -> None:
    """Upload a file (or a tree with -r: symlinked files and folders are followed, a symlink to a folder
    already copied is skipped with a warning)."""

    def body() -> None:
        if recursive:
            if not local.is_dir():
                fail(f"{local} is not a folder")
            plan = transfer.plan_upload(local, remote, create_only=create_only, chunk_size=chunk_size)
            _tree(plan, url, jobs, "put")
            return
        if local.is_dir():
            fail(f"{local} is a folder: use -r")
        n = local.stat().st_size
        with client_for(url) as client, _progress(err.is_terminal and n > 8 << 20) as progress:
            task = progress.add_task(remote, total=n)
            with open(local, "rb") as f:
                result = client.put(remote, f, create_only=create_only, chunk_size=chunk_size,
                                    progress=lambda k: progress.update(task, advance=k))
        out.print(Text(f"{result['path']} version {result['version']}: {size(result['size'], raw_bytes)}, "
                       f"sha256 {result['sha256']}"))

    run(body)


@app.command()
def get(remote: str = typer.Argument(..., help="Path in RingFS (folder with -r)."),
        local: Path = typer.Argument(..., help="Local file, or folder with -r; '-' writes to stdout."),
        recursive: bool = typer.Option(False, "-r", "--recursive", help="Copy a whole folder tree."),
        version: Optional[int] = typer.Option(None, "--version", help="Read an older version."),
        jobs: int = typer.Option(transfer.DEFAULT_JOBS, "-j", "--jobs", help="Parallel transfers for -r."),
        url: str = UrlOption) -> None:
    """Download a file (or a tree with -r)."""

    def body() -> None:
        with client_for(url) as client:
            if recursive:
                plan = transfer.plan_download(client, remote, local)
            elif str(local) == "-":
                for block in client.iter_bytes(remote, version=version):
                    sys.stdout.buffer.write(block)
                return
            else:
                n = client.stat(remote, version=version)["size"]
                with _progress(err.is_terminal and n > 8 << 20) as progress:
                    task = progress.add_task(remote, total=n)
                    client.get_file(remote, local, version=version, progress=lambda k: progress.update(task, advance=k))
                return
        _tree(plan, url, jobs, "get")

    run(body)


@app.command()
def ls(folder: str = typer.Argument("", help="Folder (default: the root)."),
       recursive: bool = typer.Option(False, "-r", "--recursive", help="Every file below, not only the children."),
       as_json: bool = JsonOption, raw_bytes: bool = BytesOption, url: str = UrlOption) -> None:
    """List a folder: files with size, version and date, and sub-folders with the size of what they hold."""

    def body() -> None:
        with client_for(url) as client:
            if as_json:
                print_json(api_get(client, f"/list/{quote_path(client, folder.strip('/'))}",
                                   recursive=str(recursive).lower()))
                return
            entries = client.ls(folder, recursive=recursive)
        t = table("type", "size", "version", "modified", "name", right=("size", "version"))
        for e in entries:
            name = e["path"] if recursive else e["name"] + ("/" if e["type"] == "dir" else "")
            t.add_row(e["type"], size(e["size"], raw_bytes), str(e.get("version") or ""),
                      when(e.get("created_at")) if e["type"] == "file" else "", Text(name))
        print_table(t)

    run(body)


@app.command()
def stat(path: str, version: Optional[int] = typer.Option(None, "--version", help="An older version."),
         as_json: bool = JsonOption, raw_bytes: bool = BytesOption, url: str = UrlOption) -> None:
    """Show a file's metadata: size, version, sha256, chunks, replication, date, chunk size."""

    def body() -> None:
        with client_for(url) as client:
            st = client.stat(path, version=version)
        if as_json:
            print_json(st)
            return
        for k, v in st.items():
            if k in ("size", "chunk_size") and isinstance(v, int):
                v = str(v) if raw_bytes else f"{size(v)} ({v} bytes)"
            elif k.endswith("_at") and isinstance(v, (int, float)):
                v = when(v)
            out.print(Text(f"{k:12} {v}"))

    run(body)


@app.command()
def versions(path: str, as_json: bool = JsonOption, raw_bytes: bool = BytesOption, url: str = UrlOption) -> None:
    """List a file's versions, oldest first."""

    def body() -> None:
        with client_for(url) as client:
            if as_json:
                print_json(api_get(client, f"/versions/{quote_path(client, path)}"))
                return
            vs = client.versions(path)
        t = table("version", "size", "created", "sha256", right=("version", "size"))
        for v in vs:
            t.add_row(str(v["version"]), size(v["size"], raw_bytes), when(v.get("created_at")), v.get("sha256", ""))
        print_table(t)

    run(body)


@app.command()
def rm(path: str = typer.Argument(..., help="A file, or a folder with -r."),
       recursive: bool = typer.Option(False, "-r", "--recursive", help="Delete every file under the folder."),
       jobs: int = typer.Option(transfer.DEFAULT_JOBS, "-j", "--jobs", help="Parallel deletes for -r."),
       url: str = UrlOption) -> None:
    """Delete a file, or with -r every file under a folder (to the trash: `ringfs undelete` brings a file back
    while it is there)."""

    def body() -> None:
        target = path.strip("/")
        if not target:
            fail("give a file or a folder (rm -r of the root is refused)")
        with client_for(url) as client:
            try:
                client.rm(target)
                deleted_file = True
            except ClientError as exc:
                if exc.status != 404:
                    raise
                if not recursive:
                    if _is_folder(client, target):
                        fail(f"{target} is a folder: use rm -r to delete every file under it")
                    raise
                deleted_file = False
            if not recursive:
                return
            try:  # rm -r: every file under the folder (and the file of that name, if there was one)
                plan = transfer.plan_remove(client, target)
            except ClientError as exc:
                if exc.status != 404 or not deleted_file:
                    raise
                plan = transfer.Plan([], 0)
        n = _tree(plan, url, jobs, "rm").files + deleted_file
        out.print(Text(f"removed {n} file{'' if n == 1 else 's'} under {target} (to the trash)"))

    run(body)


def _is_folder(client, path: str) -> bool:
    try:
        return bool(client.ls(path))
    except ClientError:
        return False


@app.command()
def mv(src: str, dst: str, url: str = UrlOption) -> None:
    """Rename a file or a folder."""

    def body() -> None:
        with client_for(url) as client:
            client.mv(src, dst)

    run(body)


@app.command()
def undelete(path: str, url: str = UrlOption) -> None:
    """Restore a deleted file from the trash (its most recent delete)."""

    def body() -> None:
        with client_for(url) as client:
            st = client.undelete(path)
        out.print(Text(f"{st['path']} restored: version {st['version']}, {size(st['size'])}"))

    run(body)


@app.command()
def trash(as_json: bool = JsonOption, raw_bytes: bool = BytesOption, url: str = UrlOption) -> None:
    """List deleted files that can still be restored, and when they expire."""

    def body() -> None:
        with client_for(url) as client:
            if as_json:
                print_json(api_get(client, "/trash"))
                return
            entries = client.trash()
        if not entries:
            out.print("the trash is empty")
            return
        t = table("path", "size", "versions", "deleted", "expires", right=("size", "versions"))
        for e in entries:
            t.add_row(Text(e["path"]), size(e["size"], raw_bytes), str(e["versions"]), when(e["deleted_at"]),
                      when(e["expires_at"]))
        print_table(t)

    run(body)


from user_app.client import cli_admin  # noqa: E402,F401  (registers up, server, status, fsck, key)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
