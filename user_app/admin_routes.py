"""Key management for admin keys (README "Security"): ``POST /admin/keys`` (the one time a secret is
shown), ``GET /admin/keys`` (no secrets) and ``DELETE /admin/keys/{access_key}``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from shared.http import JSONResponse
from shared.protocol.models import AccessKeySecret, NewAccessKey
from user_app.auth.audit import audited
from user_app.auth.principal import Principal
from user_app.services import Services

router = APIRouter(prefix="/admin")


def _admin(request: Request) -> tuple[Services, Principal]:
    principal: Principal = request.state.principal
    principal.check_admin()
    return request.app.state.services, principal


@router.post("/keys", status_code=201)
async def create_key(body: NewAccessKey, request: Request) -> JSONResponse:
    """``{"name","grants":[{"prefix","access"}],"admin"}`` → ``201 {"access_key","secret_key","name",
    "grants","admin","created_at"}``."""
    services, principal = _admin(request)
    key = await create_access_key(services, principal, body)
    return JSONResponse(key.model_dump(), status_code=201)


async def create_access_key(services: Services, principal: Principal, new: NewAccessKey) -> AccessKeySecret:
    """Create a key on the leader, audited (the web page's keys view does the same)."""
    with audited(principal, "key-create", new.name) as details:
        key = await services.leader.rpc_create_key(new)
        details["new_key"] = key.access_key
    return key


async def delete_access_key(services: Services, principal: Principal, access_key: str) -> None:
    """Delete a key on the leader, audited, and forget it here at once (other user apps within
    ``KEY_CACHE_TTL``)."""
    with audited(principal, "key-delete", access_key):
        await services.leader.rpc_delete_key(access_key)
    services.keys.forget(access_key)


@router.get("/keys")
async def list_keys(request: Request) -> dict:
    services, _ = _admin(request)
    return {"keys": [k.model_dump() for k in await services.leader.rpc_keys()]}


@router.delete("/keys/{access_key}", status_code=204)
async def delete_key(access_key: str, request: Request) -> Response:
    services, principal = _admin(request)
    await delete_access_key(services, principal, access_key)
    return Response(status_code=204)
