#!/usr/bin/env python3
"""Run ceph/s3-tests (the S3 compatibility suite Ceph RGW and SeaweedFS run) against RingFS's S3 API.

    python -m tests.s3_compat.run_s3_tests --all              # every selected test: what passes today?
    python -m tests.s3_compat.run_s3_tests --must-pass        # only must_pass.txt; exit 1 if one fails
    python -m tests.s3_compat.run_s3_tests --write-must-pass  # a full run, then must_pass.txt := its passes
    python -m tests.s3_compat.run_s3_tests --all -k "bucket_list"   # extra pytest arguments after the mode

Run it with RingFS's own venv (``.venv/bin/python``: it starts the cluster with ``LocalCluster``). It

1. finds the suite: ``$RINGFS_S3_TESTS_DIR``, else ``/work/shared/s3-tests``, else ``shared/s3-tests``
   beside this repository (how CI lays out shared/);
2. creates, or reuses, a venv for it outside the repository: ``$RINGFS_S3TESTS_VENV``, else
   ``$XDG_CACHE_HOME/ringfs/s3tests-venv-<key>`` (``~/.cache`` without XDG_CACHE_HOME). The key hashes the
   suite's ``requirements.txt``, the harness's extra requirements and the Python version, so a change of
   any of them builds a new venv; a build is locked (two runs at once build it once) and a venv counts as
   built only once its stamp file is written, so an interrupted build is redone. It installs the whole
   ``requirements.txt`` (gevent and tox included; gevent ships wheels for CPython 3.11) plus
   ``pytest-timeout`` (a hung request must fail its test, not stall the run). If that install fails, it
   falls back to what ``test_s3.py`` / ``test_headers.py`` import (IMPORTED_REQUIREMENTS) and says so;
3. starts a RingFS ``LocalCluster`` (3 chunk servers, replication 3, ``tests/conftest.py``'s FAST_ENV)
   unless ``--endpoint`` names a running one (then ``--user-url`` and the root key are needed too);
4. makes one access key each for the s3-tests users main, alt and tenant with the root key
   (``POST /admin/keys``, a write grant on prefix "": the whole namespace), deleted again at the end;
5. writes ``s3tests.conf`` from ``s3tests.conf.template``;
6. runs pytest in that venv on ``s3tests/functional/test_s3.py`` and ``test_headers.py`` with the marker
   selection MARKER_EXPRESSION (below, with the reason for each marker), ``--junitxml`` and a small plugin
   (``ringfs_s3tests_plugin.py``: counts and outcomes);
7. prints tests passed / selected / in the suite after the marker exclusion, which must-pass tests
   failed, the venv's and the run's times, and writes ``summary.json`` in the output directory
   (``--output-dir``, default a new directory under ``$XDG_CACHE_HOME/ringfs/s3tests-runs``).

The suite runs as it is: its bucket cleanup (ListObjectVersions, then DeleteObjects of every version and
delete marker) is RingFS's own.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # run by path: `python tests/s3_compat/run_s3_tests.py`
    sys.path.insert(0, str(REPO))

MUST_PASS_FILE = HERE / "must_pass.txt"
CONF_TEMPLATE = HERE / "s3tests.conf.template"
PLUGIN = "ringfs_s3tests_plugin"
TEST_FILES = ("s3tests/functional/test_s3.py", "s3tests/functional/test_headers.py")

# Markers deselected, each with its reason. Ceph's own CI (qa/tasks/s3tests.py) runs RGW with
# "not fails_on_rgw" plus the features a given RGW setup lacks; for a non-RGW backend the reference is AWS,
# so the RGW-only expectations go and the RGW shortfalls stay.
EXCLUDED_MARKERS: tuple[tuple[str, str], ...] = (
    ("fails_on_aws", "the test expects RGW's own behaviour where AWS (the reference) differs"),
    ("auth_aws2", "signature V2: AWS deprecated it, RingFS implements SigV4 only (header and presigned)"),
    ("appendobject", "RGW's append-object extension, not an S3 API"),
    ("bucket_policy", "bucket policies: 501 NotImplemented"),
    ("user_policy", "IAM user policies: RingFS has no IAM"),
    ("bucket_encryption", "default bucket encryption: 501"),
    ("encryption", "SSE-C / SSE-KMS: 501"),
    ("sse_s3", "SSE-S3: 501"),
    ("bucket_logging", "bucket logging (mostly RGW extensions): ?logging is 501"),
    ("bucket_logging_cleanup", "bucket logging: ?logging is 501"),
    ("fails_without_logging_rollover", "bucket logging with a shortened roll time: 501"),
    ("lifecycle", "lifecycle configuration: 501"),
    ("lifecycle_expiration", "lifecycle expiration (also waits on RGW's lc debug interval): 501"),
    ("lifecycle_transition", "lifecycle transitions between storage classes: 501"),
    ("cloud_transition", "transitions to a cloud tier: needs an [s3 cloud] endpoint RingFS has no use for"),
    ("cloud_restore", "restore from a cloud tier: as cloud_transition"),
    ("target_by_bucket", "cloud tier targets: as cloud_transition"),
    ("tagging", "object and bucket tagging: 501"),
    ("object_lock", "object lock, retention, legal hold: 501"),
    ("object_ownership", "ownership controls (an ACL setting): 501"),
    ("s3select", "S3 Select: 501"),
    ("s3website", "static website hosting: 501"),
    ("sns", "bucket notifications: 501"),
    ("storage_class", "storage classes other than STANDARD: RingFS has one"),
    ("test_of_sts", "STS: RingFS has no STS"),
    ("webidentity_test", "STS AssumeRoleWithWebIdentity (needs Keycloak): no STS"),
    ("abac_test", "STS attribute-based access control: no STS"),
    ("iam_account", "IAM accounts: no IAM"),
    ("iam_cross_account", "IAM: no IAM"),
    ("iam_role", "IAM roles: no IAM"),
    ("iam_tenant", "RGW tenants through IAM: no IAM"),
    ("iam_user", "IAM users: no IAM"),
    ("role_policy", "IAM role policies: no IAM"),
    ("session_policy", "STS session policies: no STS"),
    ("group", "IAM groups: no IAM"),
    ("group_policy", "IAM group policies: no IAM"),
)
# Kept on purpose: fails_on_rgw (AWS behaviour RGW lacks: valid for an AWS-compatible server),
# fails_on_dbstore / fails_on_dho / fails_on_mod_proxy_fcgi (RGW back ends and front ends),
# list_objects_v2, copy, conditional_write, checksum, auth_common (core S3 that RingFS serves).
MARKER_EXPRESSION = " and ".join(f"not {marker}" for marker, _ in EXCLUDED_MARKERS)

EXTRA_REQUIREMENTS = ("pytest-timeout>=2.3",)
# What the functional tests really import, the fallback when requirements.txt does not install whole
# (gevent and tox are in requirements.txt for s3-tests' other tools; test_s3.py / test_headers.py import
# neither).
IMPORTED_REQUIREMENTS = ("boto3", "botocore", "munch>=2.0.0", "isodate>=0.4.4", "requests>=2.23.0", "pytz",
                         "httplib2", "lxml", "PyYAML", "python-dateutil", "pytest")
STAMP = ".ringfs-s3tests-stamp"
DEFAULT_PER_TEST_TIMEOUT = 300  # seconds; the slowest tests upload tens of MB


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ringfs"


def find_s3_tests_dir() -> Path | None:
    """The s3-tests checkout: ``$RINGFS_S3_TESTS_DIR``, ``/work/shared/s3-tests``, ``../shared/s3-tests``."""
    candidates = []
    if os.environ.get("RINGFS_S3_TESTS_DIR"):
        candidates.append(Path(os.environ["RINGFS_S3_TESTS_DIR"]))
    candidates += [Path("/work/shared/s3-tests"), REPO.parent / "shared" / "s3-tests"]
    for c in candidates:
        if (c / "s3tests" / "functional" / "test_s3.py").is_file():
            return c.resolve()
    return None


def missing_suite_message() -> str:
    return ("ceph/s3-tests not found: set RINGFS_S3_TESTS_DIR to a checkout of it, or provide "
            "/work/shared/s3-tests (CI has it in shared/ beside the repository)")


# ------------------------------------------------------------------------------------------------ venv


@dataclass
class Venv:
    python: Path
    seconds: float  # time spent building it in this call (0 when reused)
    built: bool
    note: str  # how it was installed (e.g. the fallback)


def venv_key(s3dir: Path) -> str:
    h = hashlib.sha256()
    h.update((s3dir / "requirements.txt").read_bytes())
    h.update("\n".join(EXTRA_REQUIREMENTS).encode())
    h.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return h.hexdigest()[:12]


def venv_dir_for(key: str) -> Path:
    if os.environ.get("RINGFS_S3TESTS_VENV"):
        return Path(os.environ["RINGFS_S3TESTS_VENV"]).expanduser()
    return cache_home() / f"s3tests-venv-{key}"


def _pip(python: Path, *args: str, log) -> bool:
    """``pip install args`` in the venv, its output appended to ``<venv>/pip.log`` (its tail printed when
    it fails)."""
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    log(f"s3-tests venv: pip install {' '.join(args)}")
    pip_log = python.parent.parent / "pip.log"
    with open(pip_log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        ok = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode == 0
    if not ok:
        log("".join(pip_log.read_text(errors="replace").splitlines(keepends=True)[-30:]))
    return ok


def ensure_venv(s3dir: Path, log=print) -> Venv:
    """The s3-tests venv, built on first use (see the module docstring)."""
    key = venv_key(s3dir)
    vdir = venv_dir_for(key)
    python = vdir / "bin" / "python"
    stamp = vdir / STAMP
    vdir.parent.mkdir(parents=True, exist_ok=True)
    with open(vdir.parent / f".{vdir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and python.exists():
            info = json.loads(stamp.read_text())
            if info.get("key") == key:
                return Venv(python, 0.0, False, info.get("note", ""))
        started = time.monotonic()
        if vdir.exists():
            shutil.rmtree(vdir)
        log(f"s3-tests venv: building {vdir} (key {key})")
        subprocess.run([_base_python(), "-m", "venv", str(vdir)], check=True)
        _pip(python, "--upgrade", "pip", log=log)
        note = "requirements.txt + " + " ".join(EXTRA_REQUIREMENTS)
        if not _pip(python, "-r", str(s3dir / "requirements.txt"), *EXTRA_REQUIREMENTS, log=log):
            log("s3-tests venv: requirements.txt did not install; falling back to what the tests import")
            if not _pip(python, *IMPORTED_REQUIREMENTS, *EXTRA_REQUIREMENTS, log=log):
                raise RuntimeError(f"could not install the s3-tests requirements into {vdir}")
            note = "fallback (requirements.txt failed): " + " ".join(IMPORTED_REQUIREMENTS + EXTRA_REQUIREMENTS)
        seconds = time.monotonic() - started
        stamp.write_text(json.dumps({"key": key, "note": note, "built_seconds": round(seconds, 1),
                                     "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        log(f"s3-tests venv: built in {seconds:.1f} s")
        return Venv(python, seconds, True, note)


def _base_python() -> str:
    """A Python to make the venv with: this one's base interpreter (a venv made from a venv's python works
    too, but names the base as its home anyway)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base) if base.exists() else sys.executable


# ------------------------------------------------------------------------------------------- the server


@dataclass
class Target:
    s3_url: str
    user_url: str
    root_access_key: str
    root_secret_key: str
    ca_file: str | None = None


ROLES = ("main", "alt", "tenant")


def create_keys(target: Target, run_id: str) -> dict[str, dict]:
    """One key per s3-tests user, write access to the whole namespace."""
    from user_app.client import Client

    keys = {}
    with Client(target.user_url, access_key=target.root_access_key, secret_key=target.root_secret_key,
                ca_file=target.ca_file) as c:
        for role in ROLES:
            keys[role] = c.create_key(f"s3-tests {role} {run_id}", [{"prefix": "", "access": "write"}])
    return keys


def delete_keys(target: Target, keys: dict[str, dict]) -> None:
    from user_app.client import Client

    with Client(target.user_url, access_key=target.root_access_key, secret_key=target.root_secret_key,
                ca_file=target.ca_file) as c:
        for key in keys.values():
            try:
                c.delete_key(key["access_key"])
            except Exception as exc:  # the run's result matters more than a leftover test key
                print(f"warning: could not delete key {key['access_key']}: {exc}", file=sys.stderr)


def write_conf(path: Path, s3_url: str, keys: dict[str, dict]) -> None:
    u = urlsplit(s3_url)
    values = {"host": u.hostname, "port": u.port or (443 if u.scheme == "https" else 80),
              "is_secure": "True" if u.scheme == "https" else "False"}
    for role, key in keys.items():
        values[f"{role}_access_key"] = key["access_key"]
        values[f"{role}_secret_key"] = key["secret_key"]
        values[f"{role}_name"] = key["name"]
    path.write_text(Template(CONF_TEMPLATE.read_text()).substitute(values))
    path.chmod(0o600)


# ----------------------------------------------------------------------------------------------- a run


def run_suite(venv: Venv, s3dir: Path, conf: Path, out: Path, *, select_file: Path | None,
              per_test_timeout: int, extra: list[str], quiet: bool) -> dict:
    junit = out / "junit.xml"
    report = out / "report.json"
    cmd = [str(venv.python), "-m", "pytest", *TEST_FILES,
           "-c", str(s3dir / "pytest.ini"), "--rootdir", str(s3dir),
           "-m", MARKER_EXPRESSION, "-p", PLUGIN, "-p", "no:cacheprovider",
           "--ringfs-excluded-markers=" + ",".join(m for m, _ in EXCLUDED_MARKERS),
           f"--junitxml={junit}", f"--ringfs-report={report}",
           f"--timeout={per_test_timeout}", "-o", "junit_family=xunit2", "-rN", "--tb=short",
           "-q" if quiet else "-v"]
    if select_file is not None:
        cmd.append(f"--ringfs-select-file={select_file}")
    cmd += extra
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "PYTEST_", "BOTO_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(S3TEST_CONF=str(conf), PYTHONPATH=os.pathsep.join([str(HERE), str(s3dir)]),
               PYTHONDONTWRITEBYTECODE="1", AWS_DEFAULT_REGION="us-east-1",
               # no ~/.aws of whoever runs this: only the conf's keys
               AWS_CONFIG_FILE=str(out / "aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(out / "aws-credentials"))
    (out / "command.txt").write_text(" ".join(cmd) + "\n")
    started = time.monotonic()
    with open(out / "pytest.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=s3dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                if not quiet:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    seconds = time.monotonic() - started
    data = json.loads(report.read_text()) if report.exists() else {"outcomes": {}, "missing": []}
    data["pytest_exit"] = rc
    data["run_seconds"] = round(seconds, 1)
    return data


def summarize(data: dict, must_pass: list[str]) -> dict:
    outcomes = data.get("outcomes", {})
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
    passed = sorted(n for n, o in outcomes.items() if o["outcome"] == "passed")
    ran = set(outcomes)
    must_failed = sorted(n for n in must_pass if n in ran and outcomes[n]["outcome"] != "passed")
    must_not_run = sorted(n for n in must_pass if n not in ran)
    return {"passed": len(passed), "selected": data.get("selected", len(outcomes)),
            "after_markers": data.get("after_markers"), "collected_total": data.get("collected_total"),
            "counts": counts, "passed_ids": passed, "must_pass_failed": must_failed,
            "must_pass_not_run": must_not_run,
            # what each failed must-pass test did (failed, error, or skipped) and the tail of it
            "must_pass_outcomes": {n: outcomes[n] for n in must_failed}}


MUST_PASS_HEADER = """\
# ceph/s3-tests tests RingFS's S3 API must pass (tests/test_s3_compat.py runs them, in CI too).
# One pytest node id a line, relative to the s3-tests checkout, sorted.
# Regenerate from a full run (every test of the marker selection in run_s3_tests.py) with:
#     .venv/bin/python -m tests.s3_compat.run_s3_tests --write-must-pass --runs 2
# which keeps exactly the tests that passed in both runs; review the diff before committing it (a test that
# drops out is a regression unless it is understood).
"""


def write_must_pass(passed: list[str], info: str) -> None:
    lines = "".join(f"{n}\n" for n in sorted(passed))
    MUST_PASS_FILE.write_text(MUST_PASS_HEADER + f"# Last written: {info}\n" + lines)


def read_must_pass() -> list[str]:
    if not MUST_PASS_FILE.exists():
        return []
    from importlib import util

    spec = util.spec_from_file_location(PLUGIN, HERE / f"{PLUGIN}.py")
    # the plugin's own reader, so both sides parse the file alike (it imports pytest: present in RingFS's venv)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_node_ids(MUST_PASS_FILE)


# ------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--all", action="store_true", help="run every test of the marker selection")
    mode.add_argument("--must-pass", action="store_true", help="run must_pass.txt; exit 1 if one fails")
    mode.add_argument("--write-must-pass", action="store_true", help="full run, then rewrite must_pass.txt")
    mode.add_argument("--venv-only", action="store_true", help="build (or find) the venv and exit")
    p.add_argument("--endpoint", help="S3 URL of a running RingFS (default: start a LocalCluster)")
    p.add_argument("--user-url", help="its user API URL, to create the test keys (with --endpoint)")
    p.add_argument("--access-key", default=os.environ.get("RINGFS_ACCESS_KEY"), help="root (admin) key id")
    p.add_argument("--secret-key", default=os.environ.get("RINGFS_SECRET_KEY"), help="root (admin) secret")
    p.add_argument("--ca-file", default=None, help="CA certificate of an https:// endpoint")
    p.add_argument("--output-dir", type=Path, default=None, help="where junit.xml, logs and summary.json go")
    p.add_argument("--runs", type=int, default=1,
                   help="run the selection N times on the same cluster; a test counts as passed only if it "
                        "passed every time (for --write-must-pass: keeps flaky tests out of must_pass.txt)")
    p.add_argument("--per-test-timeout", type=int, default=DEFAULT_PER_TEST_TIMEOUT)
    p.add_argument("--keep-cluster", action="store_true", help="keep the started cluster's data dir and logs")
    p.add_argument("--verbose", action="store_true", help="stream pytest's output (-v) instead of -q")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    s3dir = find_s3_tests_dir()
    if s3dir is None:
        print(f"error: {missing_suite_message()}", file=sys.stderr)
        return 2
    venv = ensure_venv(s3dir)
    print(f"s3-tests venv: {venv.python.parent.parent} ({'built in %.1f s' % venv.seconds if venv.built else 'reused'};"
          f" {venv.note})")
    if args.venv_only:
        return 0

    mode = "must-pass" if args.must_pass else "all"
    out = args.output_dir or cache_home() / "s3tests-runs" / f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    must_pass = read_must_pass()
    if args.must_pass and not must_pass:
        print(f"error: {MUST_PASS_FILE} lists no test", file=sys.stderr)
        return 2

    if args.endpoint and not (args.user_url and args.access_key and args.secret_key):
        print("error: --endpoint needs --user-url and the root key (--access-key/--secret-key or "
              "RINGFS_ACCESS_KEY/RINGFS_SECRET_KEY)", file=sys.stderr)
        return 2
    # SIGTERM (a CI timeout, a supervisor) unwinds like Ctrl-C, so the cluster this run started is stopped.
    signal.signal(signal.SIGTERM, _terminate)

    cluster = None
    cluster_dir = None
    keys: dict[str, dict] = {}
    try:
        if args.endpoint:
            target = Target(args.endpoint.rstrip("/"), args.user_url.rstrip("/"), args.access_key,
                            args.secret_key, args.ca_file)
        else:
            from tests.conftest import FAST_ENV
            from user_app.client.local_cluster import LocalCluster

            started = time.monotonic()
            cluster_dir = Path(tempfile.mkdtemp(prefix="ringfs-s3tests-"))
            cluster = LocalCluster(data_dir=cluster_dir, chunk_servers=3, user_apps=1, replication=3,
                                   env=FAST_ENV)
            print(f"RingFS: starting a LocalCluster in {cluster_dir}")
            cluster.start()
            target = Target(cluster.s3_url(), cluster.url, cluster.root.access_key, cluster.root.secret_key)
            print(f"RingFS: S3 on {target.s3_url}, user API on {target.user_url} "
                  f"(started in {time.monotonic() - started:.1f} s)")
        keys = create_keys(target, out.name)
        conf = out / "s3tests.conf"
        write_conf(conf, target.s3_url, keys)
        select = None
        if args.must_pass:
            select = out / "selection.txt"
            select.write_text("".join(f"{n}\n" for n in must_pass))
        print(f"s3-tests: {s3dir}; output in {out}")
        print(f"s3-tests: -m {MARKER_EXPRESSION!r}")
        runs = []
        for i in range(args.runs):
            run_out = out if args.runs == 1 else out / f"run-{i + 1}"
            run_out.mkdir(parents=True, exist_ok=True)
            if args.runs > 1:
                print(f"s3-tests: run {i + 1} of {args.runs}")
            runs.append(run_suite(venv, s3dir, conf, run_out, select_file=select,
                                  per_test_timeout=args.per_test_timeout, extra=extra, quiet=not args.verbose))
        data = _merge_runs(runs)
    finally:
        if keys and cluster is None:
            delete_keys(target, keys)
        if cluster is not None:
            _copy_logs(cluster_dir, out)  # the services' logs, to read a failure's server side
            cluster.stop()
            if not args.keep_cluster:
                shutil.rmtree(cluster_dir, ignore_errors=True)

    summary = summarize(data, must_pass)
    summary.update(mode=mode, venv=str(venv.python.parent.parent), venv_built=venv.built,
                   venv_seconds=round(venv.seconds, 1), venv_note=venv.note, run_seconds=data["run_seconds"],
                   pytest_exit=data["pytest_exit"], missing=data.get("missing", []),
                   runs=args.runs, flaky=data.get("flaky", []), marker_expression=MARKER_EXPRESSION,
                   output_dir=str(out),
                   failures={n: o for n, o in data.get("outcomes", {}).items() if o["outcome"] in ("failed", "error")})
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    _print_summary(summary, must_pass, extra)

    if args.write_must_pass:
        if extra:
            print("error: not rewriting must_pass.txt from a run narrowed by extra pytest arguments", file=sys.stderr)
            return 2
        if not data.get("outcomes"):
            print("error: the run recorded no outcome; must_pass.txt left as it is", file=sys.stderr)
            return 1
        write_must_pass(summary["passed_ids"], f"{time.strftime('%Y-%m-%d')}, {summary['passed']} passed of "
                        f"{summary['selected']} selected")
        print(f"wrote {MUST_PASS_FILE} ({summary['passed']} tests)")
    if data["pytest_exit"] not in (0, 1) or not data.get("outcomes"):
        print(f"error: pytest exited with {data['pytest_exit']}; see {out / 'pytest.log'}", file=sys.stderr)
        return 1
    if args.must_pass and (summary["must_pass_failed"] or summary["must_pass_not_run"]):
        return 1
    return 0


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _merge_runs(runs: list[dict]) -> dict:
    """One run's data from several of the same selection: a test passed only if it passed in every run
    (its first non-passing outcome otherwise), durations and times added up."""
    if len(runs) == 1:
        return runs[0]
    merged = dict(runs[-1])
    outcomes: dict[str, dict] = {}
    for run in runs:
        for node, o in run.get("outcomes", {}).items():
            prev = outcomes.get(node)
            if prev is None or (prev["outcome"] == "passed" and o["outcome"] != "passed"):
                outcomes[node] = dict(o)
    merged["outcomes"] = outcomes
    merged["run_seconds"] = round(sum(r["run_seconds"] for r in runs), 1)
    merged["pytest_exit"] = max(r["pytest_exit"] for r in runs)
    merged["flaky"] = sorted(n for n in outcomes if any(r.get("outcomes", {}).get(n, {}).get("outcome") == "passed"
                                                       for r in runs) and outcomes[n]["outcome"] != "passed")
    return merged


def _copy_logs(cluster_dir: Path | None, out: Path) -> None:
    if cluster_dir and (cluster_dir / "logs").is_dir():
        shutil.copytree(cluster_dir / "logs", out / "ringfs-logs", dirs_exist_ok=True)


def _print_summary(s: dict, must_pass: list[str], extra: list[str]) -> None:
    print()
    print("=" * 100)
    print(f"s3-tests against RingFS ({s['mode']}{' ' + ' '.join(extra) if extra else ''})")
    print(f"  tests passed / selected / in the suite after the marker exclusion: "
          f"{s['passed']} / {s['selected']} / {s['after_markers']}   (collected before it: {s['collected_total']})")
    print(f"  outcomes: {json.dumps(s['counts'], sort_keys=True)}")
    print(f"  venv: {'built in %.1f s' % s['venv_seconds'] if s['venv_built'] else 'reused'}; "
          f"run: {s['run_seconds']:.1f} s; pytest exit {s['pytest_exit']}")
    if s.get("flaky"):
        print(f"  passed in some runs only ({s['runs']} runs): {len(s['flaky'])}")
        for n in s["flaky"]:
            print(f"    {n}")
    if s["missing"]:
        print(f"  must-pass ids not in the suite or not in its marker selection: {len(s['missing'])}")
        for n in s["missing"]:
            print(f"    {n}")
    if must_pass:
        print(f"  must-pass tests failed: {len(s['must_pass_failed'])} of {len(must_pass)}")
        for n in s["must_pass_failed"]:
            print(f"    {n}")
        if s["mode"] == "must-pass" and s["must_pass_not_run"]:
            print(f"  must-pass tests not run: {len(s['must_pass_not_run'])}")
    where = "run-*/" if s.get("runs", 1) > 1 else ""
    print(f"  details: {s['output_dir']}/summary.json, {where}junit.xml, {where}pytest.log")
    print("=" * 100)


if __name__ == "__main__":
    sys.exit(main())
