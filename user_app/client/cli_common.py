"""What every ``ringfs`` command shares: the typer app and its global options, the consoles, the one-line
errors, and how sizes, dates, tables and ``--json`` are printed.

Sizes are human (``8.8 KiB``) unless ``--bytes``; dates are ISO 8601 with the local UTC offset
(``2025-05-01T14:03:07+02:00``). Output that is not a terminal is never wrapped.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from user_app.client.client import DEFAULT_URL, Client, ClientError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="markdown",
                  help="RingFS: a GFS-style distributed file system.")
# Output that is not a terminal (a pipe, a file, grep) is never wrapped: lines stay whole for scripts.
NO_WRAP_WIDTH = 100_000
out = Console(width=None if sys.stdout.isatty() else NO_WRAP_WIDTH, soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, width=None if sys.stderr.isatty() else NO_WRAP_WIDTH, soft_wrap=not sys.stderr.isatty())

UrlOption = typer.Option(DEFAULT_URL, "--url", envvar="RINGFS_URL", help="User app URL.")
JsonOption = typer.Option(False, "--json", help="Print the API's JSON answer (pretty-printed) and nothing else.")
BytesOption = typer.Option(False, "--bytes", help="Sizes as raw byte counts, not 8.8 KiB.")
DataDirOption = typer.Option(Path("./ringfs-data"), "--data-dir", help="Where all data lives.")
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


def client_for(url: str) -> Client:
    """A client of ``url`` with the credentials and CA the global options (or their defaults) name."""
    return Client(url, **_connection)


def fail(message: str) -> None:
    """Print ``error: message`` (one line, on stderr) and exit 1."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def run(fn: Callable[[], None]) -> None:
    """Run a command's body: every error is one ``error: ...`` line on stderr and exit status 1."""
    try:
        fn()
    except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
        raise
    except ClientError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.strerror or exc}: {exc.filename}" if getattr(exc, "filename", None) else str(exc))
    except KeyboardInterrupt:
        err.print("[red]error:[/red] interrupted", highlight=False)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - a bug or a malformed answer: still one line, never a traceback
        fail(f"{type(exc).__name__}: {exc}")


def api_get(client: Client, path: str, **params: Any) -> Any:
    """``GET path`` on the user app, its JSON answer as is (what ``--json`` prints)."""
    return client._request("GET", path, params=params or None).json()


def quote_path(client: Client, path: str) -> str:
    return client._q(path)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def size(n: int | None, raw: bool = False) -> str:
    """``n`` bytes for people (binary units: ``9.0 KiB``), or the raw count with ``raw``; ``?`` for none."""
    if n is None:
        return "?"
    if raw:
        return str(n)
    if n < 1024:
        return f"{n} byte{'' if n == 1 else 's'}"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit}"


def when(ts: float | None) -> str:
    """ISO 8601 in local time with its UTC offset, to the second; ``-`` for none."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).astimezone().isoformat(timespec="seconds")


def print_table(t: Table) -> None:
    """Print a table; off a terminal without the padding at the end of each line."""
    if out.is_terminal:
        out.print(t)
        return
    with out.capture() as captured:
        out.print(t)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def table(*columns: str, right: tuple[str, ...] = ()) -> Table:
    """A table with a header row (always: on a terminal and in a pipe), no box, columns in ``right``
    right-aligned."""
    t = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left")
    return t
