"""``GET /healthz``: liveness plus the ring epoch."""

from fastapi import APIRouter, Depends
from shared.http import JSONResponse

from leader.membership import Membership
from leader.routes import get_membership

router = APIRouter()


@router.get("/healthz")
async def handle_healthz(membership: Membership = Depends(get_membership)) -> JSONResponse:
    return JSONResponse({"status": "ok", "epoch": membership.epoch})
