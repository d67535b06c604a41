"""``GET /fsck``: replication report of every chunk of every live and trashed version (leader/fsck.py);
``GET /fsck/latest``: the last report this leader made, without running one (the web page's admin view)."""

import time

from fastapi import APIRouter, Request
from shared.http import JSONResponse

from leader import fsck
from leader.metrics import record_fsck
from shared.errors import NotFound

router = APIRouter()


@router.get("/fsck")
async def handle_fsck(request: Request) -> JSONResponse:
    """The report (``leader.fsck.run_fsck`` has its shape) plus ``started_at`` / ``finished_at`` (UNIX
    seconds); it becomes ``GET /fsck/latest``."""
    state = request.app.state
    started = time.time()
    # The ring is an immutable snapshot: membership changes during the run do not affect this report.
    report = await fsck.run_fsck(state.store, state.membership.ring, state.chunks,
                                 state.settings.replication_factor)
    report = {**report, "started_at": started, "finished_at": time.time()}
    record_fsck(report)
    state.latest_fsck = report
    return JSONResponse(report)


@router.get("/fsck/latest")
async def handle_latest_fsck(request: Request) -> JSONResponse:
    """The last ``GET /fsck`` report since this leader started; 404 when none has run."""
    report = getattr(request.app.state, "latest_fsck", None)
    if report is None:
        raise NotFound("no fsck has run since the leader started")
    return JSONResponse(report)
