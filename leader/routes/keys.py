"""Access keys (cluster members only, like every leader route): ``POST /keys``, ``GET /keys``,
``GET /keys/{access_key}`` (with the secret, for user apps that check a request signed with it) and
``DELETE /keys/{access_key}``. The user app's ``/admin/keys`` is what admins call."""

from fastapi import APIRouter, Request, Response
from shared.http import JSONResponse

from leader.access_keys import AccessKeys
from shared.errors import Unavailable
from shared.protocol.models import NewAccessKey

router = APIRouter()


def _keys(request: Request) -> AccessKeys:
    keys = request.app.state.access_keys
    if keys is None:
        raise Unavailable("access keys need a cluster secret to be sealed with (this leader runs INSECURE_NO_AUTH)")
    return keys


@router.post("/keys", status_code=201)
async def handle_create_key(body: NewAccessKey, request: Request) -> JSONResponse:
    return JSONResponse((await _keys(request).create(body)).model_dump(), status_code=201)


@router.get("/keys")
async def handle_list_keys(request: Request) -> JSONResponse:
    return JSONResponse({"keys": [k.model_dump() for k in await _keys(request).list()]})


@router.get("/keys/{access_key}")
async def handle_get_key(access_key: str, request: Request) -> JSONResponse:
    return JSONResponse((await _keys(request).get(access_key)).model_dump())


@router.delete("/keys/{access_key}", status_code=204)
async def handle_delete_key(access_key: str, request: Request) -> Response:
    await _keys(request).delete(access_key)
    return Response(status_code=204)
