"""Where the CLI and the Python client find an access key, and the files ``ringfs up`` keeps beside its data.

Looked for in this order: ``--access-key`` / ``--secret-key`` (or the ``Client`` arguments), then
``RINGFS_ACCESS_KEY`` / ``RINGFS_SECRET_KEY``, then a credentials file: ``--credentials FILE`` (or
``RINGFS_CREDENTIALS``), by default ``./ringfs-data/credentials``, the one ``ringfs up`` writes. The file is
INI, as the aws cli's::

    [default]
    access_key = RK...
    secret_key = ...

``ringfs up`` also keeps the cluster secret in ``<data dir>/cluster_secret`` and, with ``--tls``, its
private CA and certificates in ``<data dir>/tls/``; every one of these files is mode 0600.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path("./ringfs-data")
CREDENTIALS_FILE = "credentials"
SECRET_FILE = "cluster_secret"
WHERE = ("give --access-key and --secret-key, set RINGFS_ACCESS_KEY and RINGFS_SECRET_KEY, or keep them in a "
         "credentials file (--credentials FILE or RINGFS_CREDENTIALS; default ./ringfs-data/credentials, which "
         "`ringfs up` writes)")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600), through a temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_credentials(path: Path, creds: Credentials) -> None:
    write_private(path, f"# RingFS credentials: an admin key with every grant\n[default]\n"
                        f"access_key = {creds.access_key}\nsecret_key = {creds.secret_key}\n")


def read_credentials(path: Path) -> Credentials | None:
    """The credentials in ``path``, or None when there is no such file (or it holds none)."""
    parser = configparser.ConfigParser()
    try:
        if not parser.read(path):
            return None
    except configparser.Error:
        return None
    section = parser["default"] if parser.has_section("default") else None
    if section is None or not section.get("access_key") or not section.get("secret_key"):
        return None
    return Credentials(section["access_key"].strip(), section["secret_key"].strip())


def resolve(access_key: str | None = None, secret_key: str | None = None,
            credentials_file: str | os.PathLike | None = None) -> Credentials | None:
    """The credentials to use, in the order of the module docstring; None when there are none."""
    if access_key and secret_key:
        return Credentials(access_key, secret_key)
    env_key, env_secret = os.environ.get("RINGFS_ACCESS_KEY"), os.environ.get("RINGFS_SECRET_KEY")
    if env_key and env_secret:
        return Credentials(env_key, env_secret)
    path = credentials_file or os.environ.get("RINGFS_CREDENTIALS") or DEFAULT_DATA_DIR / CREDENTIALS_FILE
    return read_credentials(Path(path))
