"""The web page's views for admin keys: the cluster (servers, ring share, the latest fsck and a button
to run one, anti-entropy progress) and access keys (create, with the secret shown once; list; delete)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from shared.errors import BadRequest, NotFound
from shared.protocol.models import Grant, NewAccessKey
from user_app.auth.audit import audited
from user_app.admin_routes import create_access_key, delete_access_key
from user_app.routes import cluster_report
from user_app.web.forms import csrf_protect, form
from user_app.web.pages import principal_of, services_of
from user_app.web.templating import render
from pydantic import ValidationError

router = APIRouter(prefix="/web/admin", dependencies=[Depends(csrf_protect)], include_in_schema=False)
FSCK_TIMEOUT = 600.0  # seconds the button's fsck may take (the leader checks every chunk of every file)
EVERYTHING = ("*", "/")  # how the grants box names the whole namespace (the empty prefix)


def _admin(request: Request):
    principal = principal_of(request)
    principal.check_admin()
    return services_of(request), principal


@router.get("")
async def cluster(request: Request):
    """Every server with its state, ring share, bytes, disk, last health check and anti-entropy pass;
    the policy; the latest fsck's totals."""
    services, _ = _admin(request)
    report = await cluster_report(services)
    try:
        fsck = await services.leader.rpc_json("GET", "/fsck/latest")
    except NotFound:
        fsck = None
    return render(request, "admin.html", cluster=report, fsck=fsck, chart=ring_chart(report["servers"]))


def ring_chart(servers: list[dict]) -> list[dict]:
    """Bars for the ring-share chart: ``{"server_id", "share", "percent", "y"}`` per server that owns a
    part of the ring, largest first (y: the bar's row offset in pixels)."""
    owning = sorted((s for s in servers if s.get("ring_share")), key=lambda s: -s["ring_share"])
    return [{"server_id": s["server_id"], "share": s["ring_share"], "percent": round(100 * s["ring_share"], 1),
             "y": 26 * i} for i, s in enumerate(owning)]


@router.post("/fsck")
async def run_fsck(request: Request) -> RedirectResponse:
    """Run an fsck on the leader now; the cluster page then shows it."""
    services, principal = _admin(request)
    with audited(principal, "fsck", ""):
        await services.leader.rpc_json("GET", "/fsck", timeout=FSCK_TIMEOUT)
    return RedirectResponse("/web/admin#fsck", status_code=303)


def parse_grants(text: str) -> list[Grant]:
    """One ``<prefix> <read|write>`` per line (``*`` or ``/`` alone is everything). Raises
    :class:`BadRequest` naming the line."""
    grants = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        prefix, _, access = line.rpartition(" ")
        prefix = prefix.strip()
        if access not in ("read", "write") or not prefix:
            raise BadRequest(f"grant line {number} must be '<prefix> read' or '<prefix> write', got {line[:80]!r}")
        try:
            grants.append(Grant(prefix="" if prefix in EVERYTHING else prefix, access=access))
        except ValidationError as exc:
            raise BadRequest(f"grant line {number}: {exc.errors()[0]['msg']}") from None
    return grants


async def _keys_page(request: Request, new_key=None, status: int = 200):
    services, _ = _admin(request)
    keys = sorted(await services.leader.rpc_keys(), key=lambda k: k.created_at)
    return render(request, "keys.html", status=status, keys=keys, new_key=new_key, everything=EVERYTHING[0])


@router.get("/keys")
async def keys(request: Request):
    return await _keys_page(request)


@router.post("/keys")
async def create_key(request: Request):
    """Create a key and show its secret on this one page (it is not kept anywhere it can be read back)."""
    services, principal = _admin(request)
    fields = await form(request)
    try:
        new = NewAccessKey(name=fields.get("name", "").strip(), grants=parse_grants(fields.get("grants", "")),
                           admin=fields.get("admin") in ("on", "true", "1"))
    except ValidationError as exc:
        raise BadRequest(f"key {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
    key = await create_access_key(services, principal, new)
    return await _keys_page(request, new_key=key, status=201)


@router.post("/keys/delete")
async def delete_key(request: Request) -> RedirectResponse:
    services, principal = _admin(request)
    access_key = (await form(request)).get("access_key", "")
    if not access_key:
        raise BadRequest("the form field 'access_key' is missing")
    await delete_access_key(services, principal, access_key)
    return RedirectResponse("/web/admin/keys", status_code=303)
