"""A pytest plugin loaded into the ceph/s3-tests run by ``run_s3_tests.py`` (``-p ringfs_s3tests_plugin``,
in the s3-tests venv, not in RingFS's own suite). It changes no test; it only

* counts the collected tests before and after the marker selection (``-m``), and then narrows the run to
  the node ids of ``--ringfs-select-file`` (the must-pass list) when one is given, noting those ids the
  suite no longer has;
* records every test's outcome (``passed``, ``failed``, ``error`` for a failing setup or teardown,
  ``skipped``) with the tail of its failure, and writes all of it as JSON to ``--ringfs-report``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TAIL_LINES = 40


def pytest_addoption(parser) -> None:
    group = parser.getgroup("ringfs", "RingFS s3-tests harness (tests/s3_compat)")
    group.addoption("--ringfs-select-file", default=None,
                    help="run only the node ids listed in this file (one a line, # comments)")
    group.addoption("--ringfs-report", default=None, help="write counts and outcomes as JSON here")
    group.addoption("--ringfs-excluded-markers", default="",
                    help="comma-separated markers of the -m exclusion, to count the suite after it alone "
                         "(whatever -k or --ringfs-select-file narrow the run to)")


class _State:
    def __init__(self) -> None:
        self.collected_total = 0
        self.after_markers = 0
        self.selected = 0
        self.missing: list[str] = []
        self.outcomes: dict[str, dict] = {}


STATE = _State()


def read_node_ids(path: str | Path) -> list[str]:
    ids = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line)
    return ids


def pytest_configure(config) -> None:
    config.pluginmanager.register(_NarrowPlugin(), "ringfs-narrow")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    STATE.collected_total = len(items)
    excluded = [m for m in config.getoption("--ringfs-excluded-markers").split(",") if m]
    STATE.after_markers = sum(1 for item in items if not any(item.get_closest_marker(m) for m in excluded))


def _narrow(config, items) -> None:
    select = config.getoption("--ringfs-select-file")
    if select:
        wanted = read_node_ids(select)
        wanted_set = set(wanted)
        have = {item.nodeid for item in items}
        STATE.missing = [n for n in wanted if n not in have]
        keep = [item for item in items if item.nodeid in wanted_set]
        drop = [item for item in items if item.nodeid not in wanted_set]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep
    STATE.selected = len(items)


class _NarrowPlugin:
    """Holds the trylast ``pytest_collection_modifyitems`` (a module can define a hook only once)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items) -> None:
        _narrow(config, items)


def _tail(text: str) -> str:
    """The failure without the frames inside installed libraries (boto3, botocore, urllib3 ...): the
    test's own frames, then the error lines, at most TAIL_LINES lines from the end."""
    kept: list[str] = []
    skipping = False
    for line in text.rstrip().splitlines():
        if not line.startswith((" ", "E ", "\t")) and ": in " in line:  # a frame header of --tb=short
            skipping = "site-packages" in line or "/lib/python" in line
        if not skipping or line.startswith("E "):
            kept.append(line)
    return "\n".join(kept[-TAIL_LINES:])


def pytest_runtest_logreport(report) -> None:
    entry = STATE.outcomes.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0, "tail": ""})
    entry["duration"] = round(entry["duration"] + report.duration, 3)
    if report.when == "call":
        if report.passed:
            entry["outcome"] = "passed"
        elif report.skipped:
            entry["outcome"] = "skipped"
            entry["tail"] = _skip_reason(report)
        else:
            entry["outcome"] = "failed"
            entry["tail"] = _tail(report.longreprtext)
    elif report.failed:  # setup or teardown
        entry["outcome"] = "error"
        before = entry["tail"] + "\n" if entry["tail"] else ""
        entry["tail"] = before + f"[{report.when}] " + _tail(report.longreprtext)
    elif report.skipped and report.when == "setup":
        entry["outcome"] = "skipped"
        entry["tail"] = _skip_reason(report)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return _tail(str(longrepr))


def pytest_sessionfinish(session, exitstatus) -> None:
    path = session.config.getoption("--ringfs-report")
    if not path:
        return
    data = {
        "collected_total": STATE.collected_total,
        "after_markers": STATE.after_markers,
        "selected": STATE.selected,
        "missing": STATE.missing,
        "exitstatus": int(exitstatus),
        "outcomes": STATE.outcomes,
    }
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True))
