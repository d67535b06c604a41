"""ceph/s3-tests against RingFS's S3 API: every test of ``tests/s3_compat/must_pass.txt`` must pass.

The harness is ``tests/s3_compat/run_s3_tests.py`` (its docstring says what it selects and why); this test
runs it with ``--must-pass`` against the module's own cluster (``tests/conftest.py``'s ``cluster``: a
leader, 3 chunk servers, FAST_ENV, PostgreSQL in CI's second pass) and fails with every failing node id and
the tail of its failure. The suite's venv is built once and cached outside the repository (keyed by
s3-tests' requirements.txt), so only the first run on a machine pays for it; both times are printed.

The suite is looked up in ``$RINGFS_S3_TESTS_DIR``, ``/work/shared/s3-tests`` and ``../shared/s3-tests``;
when none has it this test fails (CI must run it), it never skips.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.s3_compat import run_s3_tests as harness

# Generous: a first run builds the venv (a minute or two with wheels), then the must-pass tests run one
# by one against a real cluster.
TIMEOUT = 2700
pytestmark = pytest.mark.timeout(TIMEOUT)

TAIL_LINES = 12  # of each failure, in this test's message


def test_s3_tests_must_pass(cluster, tmp_path, capsys):
    s3dir = harness.find_s3_tests_dir()
    if s3dir is None:
        pytest.fail(harness.missing_suite_message(), pytrace=False)
    if not harness.read_must_pass():
        pytest.fail(f"{harness.MUST_PASS_FILE} lists no test", pytrace=False)

    started = time.monotonic()
    venv = harness.ensure_venv(s3dir)
    venv_seconds = time.monotonic() - started

    out = tmp_path / "s3tests-run"
    cmd = [sys.executable, "-m", "tests.s3_compat.run_s3_tests", "--must-pass",
           "--endpoint", cluster.s3_url(), "--user-url", cluster.url,
           "--output-dir", str(out)]
    # the root key by environment, not on the command line
    env = {**os.environ, "RINGFS_ACCESS_KEY": cluster.root.access_key, "RINGFS_SECRET_KEY": cluster.root.secret_key}
    started = time.monotonic()
    # Its own process group, so a run that overstays is stopped with the s3-tests pytest it started.
    proc = subprocess.Popen(cmd, cwd=harness.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT - venv_seconds - 120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"run_s3_tests.py overran {TIMEOUT - venv_seconds - 120:.0f} s:\n{stdout[-4000:]}\n"
                    f"{stderr[-4000:]}", pytrace=False)
    run_seconds = time.monotonic() - started
    summary_file = out / "summary.json"
    if not summary_file.exists():
        pytest.fail(f"run_s3_tests.py exited {proc.returncode} without a summary:\n{stdout[-4000:]}\n"
                    f"{stderr[-4000:]}", pytrace=False)
    summary = json.loads(summary_file.read_text())

    timing = (f"s3-tests venv: {'built in %.1f s' % venv.seconds if venv.built else 'reused'} "
              f"({venv_seconds:.1f} s here); must-pass run: {run_seconds:.1f} s "
              f"(pytest {summary['run_seconds']:.1f} s); passed {summary['passed']} / {summary['selected']} "
              f"selected / {summary['after_markers']} after the marker exclusion")
    with capsys.disabled():
        print(f"\n{timing}")

    failed = summary["must_pass_failed"] + summary["must_pass_not_run"]
    if failed or proc.returncode != 0:
        lines = [f"{len(failed)} of the must-pass s3-tests failed against RingFS ({timing}); "
                 f"output in {out}:"]
        for node in failed:
            entry = summary["must_pass_outcomes"].get(node)
            if entry is None:
                why = "not in the suite or its marker selection" if node in summary["missing"] else "no outcome"
                lines.append(f"\n--- {node}: not run ({why})")
                continue
            tail = "\n".join(entry["tail"].splitlines()[-TAIL_LINES:])
            lines.append(f"\n--- {node} ({entry['outcome']}):\n{tail}")
        if not failed:
            lines.append(f"\nrun_s3_tests.py exited {proc.returncode}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
        pytest.fail("\n".join(lines), pytrace=False)
