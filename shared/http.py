"""HTTP helpers shared by the three apps."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    """JSON rendered by orjson (FastAPI deprecated its own ``JSONResponse``)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# Seconds an idle keep-alive connection stays open on our servers (uvicorn's default is 5). Longer than
# any RingFS client keeps an idle pooled connection (aiohttp 30 s in the user app, httpx 5 s elsewhere),
# so a client never sends a request on a connection the server is closing at that very moment, which
# surfaces as a spurious ServerDisconnectedError on a healthy peer.
SERVER_KEEP_ALIVE = 75
