"""shared/fast_routes.py: a fast route is served by its Starlette route, stays in the OpenAPI, and answers
bad input with the same JSON 400 as FastAPI's validation. In-process (the routing alone); every service's
fast routes are exercised on real processes by the rest of the suite, and fuzzed by test_api_fuzz.py."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from shared.errors import install_error_handlers
from shared.fast_routes import FastRoutes, json_body_doc, query_param, read_model
from shared.http import JSONResponse


class Body(BaseModel):
    names: list[str] = Field(max_length=2)


def make_app() -> FastAPI:
    router = APIRouter()
    fast = FastRoutes(router)

    @fast.route("/things/{name}", ["POST"], openapi_extra=json_body_doc(Body))
    async def handle(request: Request):
        body = await read_model(request, Body)
        tag = query_param(request, "tag", r"^[a-z]{1,8}$")
        route = request.scope["route"]
        return JSONResponse({"name": request.path_params["name"], "names": body.names, "tag": tag,
                              "served_by": type(route).__module__, "template": route.path})

    @router.delete("/things/{name}")
    async def delete(name: str) -> dict:
        return {"deleted": name}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    fast.install(app)
    return app


def test_fast_route_serves_documents_and_validates():
    client = TestClient(make_app())
    r = client.post("/things/a?tag=x", json={"names": ["p", "q"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "a", "names": ["p", "q"], "tag": "x", "served_by": "shared.fast_routes",
                        "template": "/things/{name}"}
    op = client.get("/openapi.json").json()["paths"]["/things/{name}"]
    assert "post" in op and "delete" in op
    assert op["post"]["requestBody"]["content"]["application/json"]["schema"]["title"] == "Body"
    # bad input: the same JSON 400 FastAPI's validation gives, never a 500
    for bad in (client.post("/things/a?tag=x", content=b"{"), client.post("/things/a?tag=x", json={"names": [1]}),
                client.post("/things/a?tag=x", json={"names": ["a", "b", "c"]}),
                client.post("/things/a?tag=TOOLONGTAG", json={"names": []}), client.post("/things/a", json={"names": []})):
        assert bad.status_code == 400 and bad.json()["error"].startswith("invalid request: "), bad.text
    # another method on the same path still reaches its FastAPI route
    assert client.delete("/things/b").json() == {"deleted": "b"}
    assert client.get("/things/b").status_code == 405
