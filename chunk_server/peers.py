"""Client side of the chunk server's background jobs: calls to other chunk servers and to the leader.

One shared ``httpx.AsyncClient`` (created in the app lifespan). Every transport error and every non-2xx
answer is translated here into :class:`shared.errors.Unavailable` / :class:`UpstreamError`, so the jobs
catch one family, log it and retry next round. Calls are named ``rpc_*`` (server side: ``handle_*``).
"""

from __future__ import annotations

import httpx

from shared.errors import IntegrityFailure, Unavailable, UpstreamError
from shared.protocol import OCTET_STREAM, iter_frames, pack_digests, sha256, unpack_digests


class PeerClient:
    """Requests to peers and the leader over one connection pool."""

    def __init__(self, leader_url: str, timeout: float) -> None:
        self.leader_url = leader_url.rstrip("/")
        self.http = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self.http.aclose()

    async def _post(self, url: str, content: bytes) -> httpx.Response:
        try:
            resp = await self.http.post(url, content=content, headers={"content-type": OCTET_STREAM})
        except httpx.HTTPError as exc:
            raise Unavailable(f"{url} unreachable: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise UpstreamError(f"{url} answered {resp.status_code}: {resp.text[:200]}")
        return resp

    async def rpc_get_ring(self) -> dict:
        """The leader's ``GET /ring`` JSON (``shared.protocol.RingView``)."""
        url = self.leader_url + "/ring"
        try:
            resp = await self.http.get(url)
        except httpx.HTTPError as exc:
            raise Unavailable(f"leader {url} unreachable: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise UpstreamError(f"leader {url} answered {resp.status_code}")
        return resp.json()

    async def rpc_chunks_exist(self, url: str, digests: list[bytes]) -> bytes:
        """One ``ChunkPresence`` byte per digest from ``POST {url}/chunks/exists``."""
        resp = await self._post(url + "/chunks/exists", pack_digests(digests))
        if len(resp.content) != len(digests):
            raise UpstreamError(f"{url}/chunks/exists answered {len(resp.content)} bytes for {len(digests)} digests")
        return resp.content

    async def rpc_replicate_chunks(self, url: str, frames: bytes) -> int:
        """``POST {url}/chunks/replicate`` with encoded chunk frames; how many the peer newly stored."""
        return (await self._post(url + "/chunks/replicate", frames)).json()["stored"]

    async def rpc_read_chunks(self, url: str, digests: list[bytes]) -> dict[bytes, bytes]:
        """``POST {url}/chunks/read``: ``{digest: data}`` of the chunks the peer holds committed, each
        hash-checked (a bad copy is left out, as if missing)."""
        resp = await self._post(url + "/chunks/read", pack_digests(digests))
        try:
            frames = list(iter_frames(resp.content))
        except Exception as exc:  # BadRequest from the framing: the peer, not us, is at fault
            raise UpstreamError(f"{url}/chunks/read answered bad frames: {exc}") from exc
        return {d: bytes(data) for d, data in frames if data is not None and sha256(data) == d}

    async def rpc_gc_unreferenced(self, digests: list[bytes]) -> list[bytes]:
        """The leader's ``POST /gc/unreferenced``: those of ``digests`` no version references."""
        resp = await self._post(self.leader_url + "/gc/unreferenced", pack_digests(digests))
        try:
            unreferenced = unpack_digests(resp.content)
        except Exception as exc:
            raise UpstreamError(f"leader /gc/unreferenced answered {len(resp.content)} bytes") from exc
        asked = set(digests)
        if any(d not in asked for d in unreferenced):
            raise IntegrityFailure("leader /gc/unreferenced answered digests that were not asked about")
        return unreferenced
