"""``GET /healthz``: liveness, this leader's role and term (``leader/election.py``) and the ring epoch."""

from fastapi import APIRouter, Request
from shared.http import JSONResponse

router = APIRouter()


@router.get("/healthz")
async def handle_healthz(request: Request) -> JSONResponse:
    """``{"status": "ok", "role": "active" | "standby", "term": N | null, "epoch": N | null,
    "active_leader": URL | null}``. A leader on SQLite is always active, with term null."""
    state = request.app.state
    election, membership = state.election, state.membership
    if election is None:
        role, term, active = "active", None, None
    else:
        role = "active" if election.is_active() else "standby"
        term, active = election.term if role == "active" else None, election.active_url
    return JSONResponse({"status": "ok", "role": role, "term": term,
                         "epoch": membership.epoch if membership is not None else None, "active_leader": active})
