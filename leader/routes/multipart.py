"""Multipart uploads (``leader/multipart.py``), which the user app's S3 API drives: ``POST /multipart``,
``GET /multipart``, ``GET`` and ``DELETE /multipart/{upload_id}``, ``GET /multipart/{upload_id}/parts``,
``POST /multipart/{upload_id}/assemble`` and ``POST /multipart/{upload_id}/complete``. The parts themselves
are written through ``POST /txns`` with ``upload_id`` and ``part_number`` (``leader/routes/txns.py``).
An unknown upload id, or one that cannot be one, is a 404 everywhere."""

from fastapi import APIRouter, Depends, Query, Request, Response
from shared.http import JSONResponse

from leader import multipart
from leader.routes import get_store
from leader.scan import checked_bound
from leader.store import Store
from shared.bodies import BodyLimit
from shared.fast_routes import read_model
from shared.numbers import parse_uint
from shared.protocol.models import AssembleRequest, CompleteRequest, NewUpload
from shared.protocol.rules import MAX_SCAN_LIMIT

router = APIRouter()

# An assemble or complete body: 10,000 parts whose ETags (as the client wrote them, up to 1024
# characters each) came from a CompleteMultipartUpload document of at most 2 MiB (user_app/s3/xml.py).
MAX_PARTS_BODY = 4 * 1024 * 1024


def _limit(raw: str | None) -> int:
    """``?limit=``: 1 to 1000 (default 1000), else 400."""
    return MAX_SCAN_LIMIT if raw is None else parse_uint("limit", raw, minimum=1, maximum=MAX_SCAN_LIMIT)


@router.post("/multipart", status_code=201)
async def handle_create_upload(req: NewUpload, store: Store = Depends(get_store)) -> JSONResponse:
    """201 :class:`UploadSummary` ``{"upload_id", "path", "created_at"}``; 400 for a bad path,
    ``content_type``, ``user_metadata`` or ``object_headers``."""
    return JSONResponse((await multipart.create_upload(store, req)).model_dump(), status_code=201)


@router.get("/multipart")
async def handle_list_uploads(prefix: str = Query(default=""), key_marker: str | None = Query(default=None),
                              upload_id_marker: str | None = Query(default=None),
                              limit: str | None = Query(default=None),
                              store: Store = Depends(get_store)) -> JSONResponse:
    """:class:`UploadListing` ``{"uploads": [{"upload_id", "path", "created_at"}], "truncated"}``: the uploads
    whose path starts with ``prefix``, after the markers (``leader.multipart.list_uploads``); 400 for a bad
    ``limit`` or a bound with a control character."""
    listing = await multipart.list_uploads(
        store, checked_bound("prefix", prefix) or "", checked_bound("key_marker", key_marker),
        checked_bound("upload_id_marker", upload_id_marker), _limit(limit))
    return JSONResponse(listing.model_dump())


@router.get("/multipart/{upload_id}")
async def handle_get_upload(upload_id: str, store: Store = Depends(get_store)) -> JSONResponse:
    """:class:`UploadInfo` ``{"upload_id", "path", "created_at", "content_type", "user_metadata",
    "object_headers"}`` (the last two parsed); 404."""
    return JSONResponse((await multipart.get_upload(store, upload_id)).model_dump())


@router.delete("/multipart/{upload_id}", status_code=204)
async def handle_abort_upload(upload_id: str, store: Store = Depends(get_store)) -> Response:
    """204 once the upload and all its parts are gone; 404."""
    await multipart.abort_upload(store, upload_id)
    return Response(status_code=204)


@router.get("/multipart/{upload_id}/parts")
async def handle_list_parts(upload_id: str, part_number_marker: str | None = Query(default=None),
                            limit: str | None = Query(default=None),
                            store: Store = Depends(get_store)) -> JSONResponse:
    """:class:`PartListing` ``{"parts": [{"part_number", "size", "etag", "committed_at"}], "truncated"}``:
    the parts numbered above ``part_number_marker`` (default 0), ascending; 404, 400 for a bad number."""
    marker = 0 if part_number_marker is None else parse_uint("part_number_marker", part_number_marker)
    return JSONResponse((await multipart.list_parts(store, upload_id, marker, _limit(limit))).model_dump())


@router.post("/multipart/{upload_id}/assemble")
async def handle_assemble(upload_id: str, request: Request, store: Store = Depends(get_store)) -> JSONResponse:
    """Body :class:`AssembleRequest` ``{"parts": [[part_number, etag], ...]}``. 200
    ``{"problem": {"code", "message"}}`` when S3 would refuse it, else 200 :class:`AssemblyPlan`
    (``"problem": null``); 404, 400 for a malformed body. Read-only."""
    req = await read_model(request, AssembleRequest, MAX_PARTS_BODY)
    return JSONResponse(await multipart.assemble(store, upload_id, req.parts))


@router.post("/multipart/{upload_id}/complete", status_code=201)
async def handle_complete(upload_id: str, request: Request, store: Store = Depends(get_store)) -> JSONResponse:
    """Body :class:`CompleteRequest`. 201 :class:`VersionInfo` of the new version of the upload's path;
    404 no such upload (or gone meanwhile), 400 a problem (``"<S3 code>: ..."``), unaligned parts or a
    malformed body, 409 the parts changed since assemble or the path would be a file and a folder, 412
    ``create_only`` / ``if_match`` failed (``leader.multipart.complete``)."""
    req = await read_model(request, CompleteRequest, MAX_PARTS_BODY)
    return JSONResponse((await multipart.complete(store, upload_id, req)).model_dump(), status_code=201)


# Bodies larger than JSON_BODY_LIMIT this router takes (shared.bodies.BodyLimitMiddleware applies them).
BODY_LIMITS = (
    BodyLimit("POST", "/multipart/", MAX_PARTS_BODY),
)
