"""What one S3 request's operation works with: :class:`S3Request`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from shared.config import UserAppSettings
from user_app.auth.principal import Principal
from user_app.s3 import xml
from user_app.s3.auth import S3Caller
from user_app.s3.buckets_known import KnownBuckets
from user_app.services import Services


@dataclass
class S3Request:
    """One authenticated S3 request: ``bucket`` and ``key`` as the URL names them (None for the service
    and for a bucket's own operations), the user app's services, and the request id of its answer."""

    request: Request
    caller: S3Caller
    services: Services
    settings: UserAppSettings
    buckets: KnownBuckets
    bucket: str | None
    key: str | None
    request_id: str

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def has_query(self, name: str) -> bool:
        return name in self.request.query_params

    async def require_bucket(self) -> None:
        """Raise ``NoSuchBucket`` unless this request's bucket exists."""
        await self.buckets.require(self.services.leader, self.bucket)

    def xml(self, root: ET.Element, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(xml.to_bytes(root), status_code=status, headers=headers, media_type=xml.XML_TYPE)
