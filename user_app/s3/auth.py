"""Who sent an S3 request: AWS Signature V4 (header form or presigned URL; ``shared/auth/sigv4.py``) with
the access keys of the user API (README "Security"), looked up through the user app's key cache.

* No signature: ``AccessDenied`` (403), as AWS answers an anonymous request to a private bucket; RingFS
  has no public buckets. Under ``INSECURE_NO_AUTH`` an unsigned request is the anonymous admin, and a
  signed one is still checked.
* An unknown key: ``InvalidAccessKeyId``; a wrong secret: ``SignatureDoesNotMatch``; an expired presigned
  URL: ``AccessDenied`` "Request has expired"; the leader unreachable: ``ServiceUnavailable`` (503).

The secret is used only to derive the signing key; it is never logged nor put in an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.auth.sigv4 import (
    ParsedAuth, SigV4Error, SigV4Request, VerifiedRequest, auth_type, parse_request, verify_parsed,
)
from user_app.auth.authentication import ANONYMOUS_ADMIN
from user_app.auth.key_cache import KeyCache
from user_app.auth.principal import Principal
from user_app.s3.errors import S3Error


@dataclass(frozen=True)
class S3Caller:
    """An authenticated S3 request: its ``principal``, and ``verified`` (None for the anonymous admin of
    ``INSECURE_NO_AUTH``), which says how the body must be checked."""

    principal: Principal
    verified: VerifiedRequest | None


def sigv4_request(scope) -> SigV4Request:
    """The request as ``shared.auth.sigv4`` reads it, from an ASGI ``scope``."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    return SigV4Request(scope["method"], raw_path.split(b"?", 1)[0], scope.get("query_string") or b"",
                        scope.get("headers", ()))


async def authenticate(scope, keys: KeyCache, region: str, insecure: bool) -> S3Caller:
    """The caller of ``scope``'s request. Raises :class:`S3Error` / ``SigV4Error`` (see the module
    docstring) and :class:`shared.errors.Unavailable`."""
    request = sigv4_request(scope)
    if auth_type(request) is None:
        if insecure:
            return S3Caller(ANONYMOUS_ADMIN, None)
        try:
            parse_request(request, region)  # a SigV2 presigned URL: InvalidRequest, "use AWS4-HMAC-SHA256"
        except SigV4Error as exc:
            if exc.code != "AccessDenied":
                raise
        raise S3Error("AccessDenied", "Access Denied: this request is not signed, and RingFS has no public "
                      "buckets; sign it with an access key (AWS Signature Version 4).", 403)
    parsed: ParsedAuth = parse_request(request, region)
    key = await keys.lookup(parsed.access_key_id)
    verified = verify_parsed(parsed, key.secret_key if key is not None else None)
    return S3Caller(Principal.of(key), verified)
