"""``POST /internal/leases/revoke``: the leader ends this user app's read leases before it commits a change
(``leader/read_leases.py``, ``user_app/manifest_leases.py``). Only the cluster credential reaches it
(``user_app/auth/authentication.py``); no user key does.

Body: JSON ``{"holder": "<holder id>", "paths": ["a/b.txt", ...] | null}`` (null: every path). Answers
``200 {"revoked": <paths dropped or "all">}``, ``409`` when ``holder`` is not this process (a restarted
user app at the same address: the leader then waits the old lease out), ``400`` for a malformed body,
``404`` when this user app keeps no lease cache.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request

from shared.bodies import BodyLimit, read_body
from shared.errors import BadRequest, Conflict, NotFound
from shared.http import JSONResponse
from shared.protocol.rules import LEASE_REVOKE_PATH

router = APIRouter()

# A revocation lists the paths of one batch commit: 1024 paths of at most 1024 bytes, JSON-escaped.
MAX_REVOKE_BODY = 8 * 1024 * 1024
BODY_LIMIT = BodyLimit("POST", LEASE_REVOKE_PATH, MAX_REVOKE_BODY)


def parse_revocation(body: bytes) -> tuple[str, list[str] | None]:
    """``(holder, paths or None)`` of a revocation body. Raises :class:`BadRequest`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the revocation body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("holder"), str):
        raise BadRequest('a revocation is {"holder": "<holder id>", "paths": [...] | null}')
    paths = doc.get("paths")
    if paths is not None and (not isinstance(paths, list) or not all(isinstance(p, str) for p in paths)):
        raise BadRequest("paths must be a list of strings, or null for every path")
    return doc["holder"], paths


@router.post(LEASE_REVOKE_PATH, include_in_schema=False)
async def revoke_leases(request: Request) -> JSONResponse:
    leases = request.app.state.services.reader.leases
    holder, paths = parse_revocation(await read_body(request, MAX_REVOKE_BODY))
    if leases is None:
        raise NotFound("this user app keeps no lease cache (READ_LEASES=false or WORKERS > 1)")
    if not leases.revoke(holder, paths):
        raise Conflict(f"holder {holder[:64]!r} is not this process: it restarted since the lease was granted")
    return JSONResponse({"revoked": "all" if paths is None else len(paths)})
