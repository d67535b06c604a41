"""Credentials of the test clusters: one cluster secret and one root key for every cluster the suite
starts (``tests/conftest.py`` puts them in each service's environment and in ``RINGFS_ACCESS_KEY`` /
``RINGFS_SECRET_KEY`` for ``Client`` and the CLI), and an httpx client that carries both credentials.

``http`` signs every request with the cluster credential (``X-RingFS-Auth``, what the leader and the
chunk servers check) and sends the root key as HTTP Basic (what the user app checks), so a test can talk
to any service the way the service's own peers and its admin would. Tests of the boundary itself use
plain ``httpx`` (no credential) or build requests by hand.
"""

from __future__ import annotations

import base64
from typing import Generator

import httpx

from shared.auth.cluster_secret import SigningKey, parse_secret
from shared.auth.rpc_signing import HEADER, PURPOSE, sign

CLUSTER_SECRET = "5f1c0ffee0ddba11" * 4  # 32 bytes, hex
ROOT_ACCESS_KEY = "RKTESTROOTKEY0000001"
ROOT_SECRET_KEY = "test-root-secret-key/0123456789abcdefghij"
ROOT = (ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
# What every test service gets (the leader uses the root pair, the others ignore it).
AUTH_ENV = {"CLUSTER_SECRET": CLUSTER_SECRET, "ROOT_ACCESS_KEY": ROOT_ACCESS_KEY, "ROOT_SECRET_KEY": ROOT_SECRET_KEY}

SIGNING_KEY = SigningKey.for_purpose(parse_secret(CLUSTER_SECRET, "test secret"), PURPOSE)  # what the services sign with


def cluster_header(method: str, raw_path: str, key: SigningKey = SIGNING_KEY) -> str:
    """A fresh ``X-RingFS-Auth`` value for one request (``raw_path``: path and query as sent)."""
    return sign(key, method, raw_path)


def basic_header(access_key: str, secret_key: str) -> str:
    return "Basic " + base64.b64encode(f"{access_key}:{secret_key}".encode()).decode()


class TestAuth(httpx.Auth):
    """Both credentials on every request (see the module docstring)."""

    __test__ = False  # not a test class
    def __init__(self, basic: tuple[str, str] | None = ROOT, cluster: bool = True) -> None:
        self.basic = basic_header(*basic) if basic else None
        self.cluster = cluster

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.cluster:
            request.headers[HEADER] = cluster_header(request.method, request.url.raw_path.decode("ascii"))
        if self.basic is not None:
            request.headers["Authorization"] = self.basic
        yield request


def authed_client(**kw) -> httpx.Client:
    """An httpx client with both credentials (``base_url``, ``timeout`` ... as httpx takes them)."""
    return httpx.Client(auth=TestAuth(), **{"timeout": 30.0, **kw})


http = authed_client()  # module-level: ``http.get(url)`` wherever a test used ``httpx.get(url)``
