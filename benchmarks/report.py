"""Turn the raw results into the figures table (rich) or JSON."""

from __future__ import annotations

import json
import statistics

from rich.console import Console
from rich.table import Table

# figure, workload, metric, unit, target (op, value) or None; targets: issue 11 (data plane v2)
FIGURES = [
    ("small_write", "small_write", "files_per_s", "files/s", (">=", 450)),
    ("small_write p50", "small_write", "p50_ms", "ms", None),
    ("small_write p99", "small_write", "p99_ms", "ms", None),
    ("small_read", "small_read", "files_per_s", "files/s", (">=", 1400)),
    ("small_read p50", "small_read", "p50_ms", "ms", None),
    ("small_read p99", "small_read", "p99_ms", "ms", None),
    ("par_write", "par_write", "files_per_s", "files/s", (">=", 1200)),
    ("par_read", "par_read", "files_per_s", "files/s", (">=", 3000)),
    ("tree_put", "tree_put", "files_per_s", "files/s", (">=", 1500)),
    ("tree_get", "tree_get", "files_per_s", "files/s", (">=", 3000)),
    ("large_write", "large_write", "mb_per_s", "MB/s", (">=", 120)),
    ("large_read", "large_read", "mb_per_s", "MB/s", (">=", 400)),
    ("large_write_64k", "large_write_64k", "mb_per_s", "MB/s", None),
    ("large_read_64k", "large_read_64k", "mb_per_s", "MB/s", None),
    ("large_write_1k", "large_write_1k", "mb_per_s", "MB/s", (">=", 40)),
    ("large_read_1k", "large_read_1k", "mb_per_s", "MB/s", (">=", 150)),
]
USER_APP_RSS_TARGET = 150.0


def _met(value: float, target) -> bool | None:
    if target is None or value is None:
        return None
    op, t = target
    return value >= t if op == ">=" else value <= t


def build_figures(results: dict, peak_rss: dict, peak_rss_single: dict) -> list[dict]:
    rows = []
    for figure, workload, metric, unit, target in FIGURES:
        r = results.get(workload)
        if r is None:
            continue
        samples = [rep[metric] for rep in r["reps"] if metric in rep]
        value = statistics.median(samples) if samples else None
        rows.append({"figure": figure, "value": value, "unit": unit, "samples": samples,
                     "target": f"{'≥' if target and target[0] == '>=' else '≤'} {target[1]}" if target else "",
                     "met": _met(value, target), "error": r.get("error")})
    for name, mib in sorted(peak_rss.items()):
        target = ("<=", USER_APP_RSS_TARGET) if name.startswith("user_app") else None
        rows.append({"figure": f"peak RSS {name}", "value": mib, "unit": "MiB", "samples": [],
                     "largest_process_mib": peak_rss_single.get(name),
                     "target": f"≤ {USER_APP_RSS_TARGET:.0f}" if target else "", "met": _met(mib, target),
                     "error": None})
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"


def cpu_per_op(doc: dict, phase: str) -> tuple[str, str, str]:
    """(services ms per operation, client ms per operation, the operation's unit) for ``phase``: the
    median over repetitions of CPU seconds summed over every service process (and, apart, the client's),
    divided by the operations one repetition does (files, or MiB for the large phases)."""
    ops, unit = (doc.get("ops") or {}).get(phase) or (0, "")
    reps = doc["cpu"].get(phase) or []
    if not ops or not reps:
        return "-", "-", unit or "-"
    services = statistics.median([sum(v for k, v in rep.items() if k != "client") for rep in reps])
    client = statistics.median([rep.get("client", 0.0) for rep in reps])
    return _fmt(services / ops * 1e3), _fmt(client / ops * 1e3), unit


def print_table(doc: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 150)
    t = Table(title=f"RingFS benchmark ({doc['date']}, median of {doc['args']['repeat']})")
    for col, just in (("figure", "left"), ("value", "right"), ("unit", "left"), ("target", "left"), ("met", "center")):
        t.add_column(col, justify=just)
    for row in doc["figures"]:
        met = {True: "[green]yes[/green]", False: "[red]NO[/red]", None: ""}[row["met"]]
        value = "[red]ERROR[/red]" if row["error"] else _fmt(row["value"])
        t.add_row(row["figure"], value, row["unit"], row["target"], met)
    console.print(t)

    if doc["cpu"]:
        services = sorted({k for reps in doc["cpu"].values() for rep in reps for k in rep if k != "client"})
        c = Table(title="CPU seconds (user+sys) per phase, median of repetitions")
        c.add_column("phase")
        for s in [*services, "client"]:
            c.add_column(s, justify="right")
        c.add_column("services ms/op", justify="right")
        c.add_column("client ms/op", justify="right")
        c.add_column("op", justify="left")
        c.add_column("user app VmHWM MiB", justify="right")
        for phase, reps in doc["cpu"].items():
            cells = [_fmt(statistics.median([rep.get(s, 0.0) for rep in reps])) for s in [*services, "client"]]
            hwm = doc["user_app_hwm"].get(phase) or []
            c.add_row(phase, *cells, *cpu_per_op(doc, phase), _fmt(max(hwm)) if hwm else "-")
        console.print(c)

    console.print(f"page cache before reads: {doc['page_cache'] or 'n/a'}; env: {doc['env'] or '{}'}; "
                  f"data dir: {doc['data_dir']}")
    for name, r in doc["results"].items():
        if r.get("error"):
            console.print(f"[red]{name} failed:[/red] {r['error']}", highlight=False)


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, default=str)
