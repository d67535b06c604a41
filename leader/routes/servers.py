"""Membership endpoints: ``POST /servers`` (registration), ``GET /servers``, ``GET /ring``,
``GET /cluster``. The GETs send the membership's cached state: no SQL on the hot path."""

import orjson
from fastapi import APIRouter, Depends, Response
from shared.http import JSONResponse

from leader.membership import Membership
from leader.routes import get_membership
from shared.protocol.models import ServerRegistration

router = APIRouter()
JSON = "application/json"


@router.post("/servers")
async def handle_register(reg: ServerRegistration, membership: Membership = Depends(get_membership)) -> JSONResponse:
    result = await membership.register(reg)
    return JSONResponse(result.model_dump())


@router.get("/servers")
async def handle_list_servers(membership: Membership = Depends(get_membership)) -> Response:
    return Response(membership.servers_json, media_type=JSON)


@router.get("/ring")
async def handle_ring(membership: Membership = Depends(get_membership)) -> Response:
    return Response(membership.ring_json, media_type=JSON)


@router.get("/cluster")
async def handle_cluster(membership: Membership = Depends(get_membership)) -> Response:
    """The ring without its virtual nodes, plus ``last_seen_at``: ``{server_id: UNIX seconds}`` of each
    server's last answered health check (or registration)."""
    return Response(orjson.dumps({**membership.cluster_doc, "last_seen_at": membership.last_seen_at}), media_type=JSON)
