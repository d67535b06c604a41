"""An httpx ``Auth`` that signs requests with the cluster credential, for tools that hold the cluster
secret and talk to the leader or a chunk server directly: the local launcher (waiting for chunk servers to
register), operators' scripts, and the tests. Services themselves sign in ``shared/rpc/transport.py``."""

from __future__ import annotations

from typing import Generator

import httpx

from shared.auth.cluster_secret import SigningKey, parse_secret
from shared.auth.rpc_signing import HEADER, PURPOSE, sign


class ClusterSigner(httpx.Auth):
    """Adds ``X-RingFS-Auth`` (a fresh time stamp and nonce each time) to every request."""

    def __init__(self, secret_hex: str) -> None:
        self.key = SigningKey.for_purpose(parse_secret(secret_hex, "the cluster secret"), PURPOSE)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[HEADER] = sign(self.key, request.method, request.url.raw_path.decode("ascii"))
        yield request
