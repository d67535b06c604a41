"""``GET /fsck``: replication report of every chunk of every live and trashed version (leader/fsck.py)."""

from fastapi import APIRouter, Request
from shared.http import JSONResponse

from leader import fsck
from leader.metrics import record_fsck

router = APIRouter()


@router.get("/fsck")
async def handle_fsck(request: Request) -> JSONResponse:
    state = request.app.state
    # The ring is an immutable snapshot: membership changes during the run do not affect this report.
    report = await fsck.run_fsck(state.store, state.membership.ring, state.chunks,
                                 state.settings.replication_factor)
    record_fsck(report)
    return JSONResponse(report)
