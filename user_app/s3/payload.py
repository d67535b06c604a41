"""An S3 request body as verified bytes, whatever form the client sent it in (S3 API reference,
"Authenticating Requests (AWS Signature Version 4)" and "Checking object integrity"):

* a plain body whose SHA-256 was signed (``x-amz-content-sha256: <hex>``), or ``UNSIGNED-PAYLOAD``;
* aws-chunked (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``, every chunk's signature checked;
  ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``), decoded by :class:`shared.auth.aws_chunked.AwsChunkedDecoder`;
* each with ``Content-MD5`` and an ``x-amz-checksum-crc32/crc32c/crc64nvme/sha1/sha256`` header or trailer,
  checked over the decoded bytes.

The blocks are handed on as they arrive; what can only be checked at the end (the signed SHA-256, the
checksums, the last chunk's signature) is checked before the stream ends, so a write that consumes it
raises instead of committing a body that does not match (the write path aborts: nothing is stored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request

from shared.auth.aws_chunked import AwsChunkedDecoder
from shared.auth.checksums import ChecksumResult, RequestChecksum
from shared.auth.sigv4 import VerifiedRequest
from shared.bodies import iter_body
from user_app.s3.errors import S3Error


class VerifiedBody:
    """``async for block in VerifiedBody(...)``: the decoded body. After the iteration ends,
    ``checksum`` is the ``x-amz-checksum-*`` that matched (None when none was sent) and ``size`` the
    decoded length in bytes. Raises :class:`S3Error` ``EntityTooLarge`` past ``limit`` bytes, and the
    ``SigV4Error`` of a body that does not match its signature or checksums."""

    def __init__(self, request: Request, verified: VerifiedRequest | None, limit: int) -> None:
        self.request = request
        self.verified = verified
        self.limit = limit
        self.checksum: ChecksumResult | None = None
        self.size = 0
        headers = request.headers.raw
        self._decoder = (AwsChunkedDecoder.from_verified(verified, headers)
                         if verified is not None and verified.is_streaming else None)
        self._sha256 = verified.payload_verifier() if verified is not None else None
        self._checksums = None if self._decoder is not None else RequestChecksum.from_headers(headers)

    @property
    def declared_size(self) -> int | None:
        """The decoded length the client announced (``x-amz-decoded-content-length`` for aws-chunked,
        else ``Content-Length``), bytes; a hint only."""
        if self._decoder is not None:
            return self._decoder.decoded_length
        length = self.request.headers.get("content-length")
        return int(length) if length is not None and length.isdigit() else None

    def _too_large(self) -> S3Error:
        return S3Error("EntityTooLarge", f"Your proposed upload exceeds the maximum allowed size of "
                       f"{self.limit} bytes.", 400, MaxSizeAllowed=str(self.limit))

    def _count(self, block: bytes) -> bytes:
        self.size += len(block)
        if self.size > self.limit:
            raise self._too_large()
        return block

    async def __aiter__(self) -> AsyncIterator[bytes]:
        declared = self.declared_size
        if declared is not None and declared > self.limit:
            raise self._too_large()
        if self._decoder is not None:
            async for raw in iter_body(self.request):
                for block in self._decoder.feed(raw):
                    yield self._count(block)
            self.checksum = self._decoder.finish()
            return
        async for block in iter_body(self.request):
            self._count(block)
            if self._sha256 is not None:
                self._sha256.update(block)
            self._checksums.update(block)
            yield block
        if self._sha256 is not None:
            self._sha256.finish()
        self.checksum = self._checksums.finish()


async def read_small(request: Request, verified: VerifiedRequest | None, limit: int) -> bytes:
    """The whole verified body of a small request (an XML document), at most ``limit`` bytes."""
    return b"".join([block async for block in VerifiedBody(request, verified, limit)])
