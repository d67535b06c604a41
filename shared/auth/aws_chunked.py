"""Incremental decoder for ``Content-Encoding: aws-chunked`` request bodies (sans-IO).

Wire format (S3 API reference, "Signature Calculations for the Authorization Header: Transferring
Payload in Multiple Chunks (Chunked Upload)" and "Signature calculations for trailing headers")::

    STREAMING-AWS4-HMAC-SHA256-PAYLOAD             STREAMING-UNSIGNED-PAYLOAD-TRAILER
      <hex size>;chunk-signature=<sig>\\r\\n           <hex size>\\r\\n
      <size bytes>\\r\\n                                <size bytes>\\r\\n
      ...                                            ...
      0;chunk-signature=<sig>\\r\\n                     0\\r\\n
      \\r\\n                                           x-amz-checksum-crc32:<base64>\\r\\n
                                                     \\r\\n
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: as the first, then after the final chunk
      x-amz-checksum-crc32c:<base64>\\r\\n
      x-amz-trailer-signature:<sig>\\r\\n
      \\r\\n

Chunk *n*'s signature is HMAC(kSigning, "AWS4-HMAC-SHA256-PAYLOAD\\n" date "\\n" scope "\\n"
signature(n-1) "\\n" hex(SHA256("")) "\\n" hex(SHA256(chunk data))), starting from the request's seed
signature; the trailer's is HMAC(kSigning, "AWS4-HMAC-SHA256-TRAILER\\n" date "\\n" scope "\\n"
signature(final chunk) "\\n" hex(SHA256(trailer lines as "name:value\\n"))).

:class:`AwsChunkedDecoder` is fed the body in blocks of any size and returns the decoded payload.
Memory is bounded: a signed chunk is held until its signature is checked (so no unverified byte is
ever returned), which is at most ``max_chunk_size`` bytes; an unsigned chunk is passed on as it
arrives; a chunk-size line or trailer line longer than ``max_line`` is refused. Usage::

    decoder = AwsChunkedDecoder.from_verified(verified, headers)
    async for block in receive():
        for data in decoder.feed(block):
            await sink.write(data)
    result = decoder.finish()          # IncompleteBody if the body stopped early
    decoder.checksum                    # ChecksumResult to store (or None)

Errors (:class:`shared.auth.sigv4.SigV4Error`; the first one is raised again by every later call):
``SignatureDoesNotMatch`` (403) a chunk or trailer signature is wrong; ``IncompleteBody`` (400) the
body ended early or is shorter than ``x-amz-decoded-content-length``; ``InvalidRequest`` (400) bad
framing, a chunk larger than ``max_chunk_size``, more data than declared, or data after the end;
``MalformedTrailerError`` (400) a bad, undeclared or missing trailer; ``BadDigest`` (400) the
checksum in a header or trailer does not match the decoded data; ``InvalidChunkSizeError`` (403) a
chunk other than the last is shorter than ``min_chunk_size`` (when set).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence

from shared.auth.checksums import ChecksumResult, RequestChecksum
from shared.auth.sigv4 import (
    EMPTY_SHA256,
    PAYLOAD_STREAMING,
    PAYLOAD_STREAMING_TRAILER,
    PAYLOAD_STREAMING_UNSIGNED_TRAILER,
    SigV4Error,
    VerifiedRequest,
    normalize_headers,
    signatures_equal,
)

CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
TRAILER_ALGORITHM = "AWS4-HMAC-SHA256-TRAILER"
# Largest chunk accepted (bytes). SDKs send 64 KiB (signed) to 1 MiB (botocore, unsigned) chunks.
DEFAULT_MAX_CHUNK_SIZE = 8 * 1024 * 1024
# Longest chunk-size or trailer line, CRLF excluded (a signed chunk-size line is ~ 90 bytes).
DEFAULT_MAX_LINE = 4096
MAX_TRAILERS = 16

_HEX_SIZE_RE = re.compile(rb"[0-9a-fA-F]{1,16}")

_HEADER, _DATA, _DATA_CRLF, _TRAILER, _DONE = range(5)


def strip_aws_chunked(content_encoding: str | None) -> str | None:
    """The ``Content-Encoding`` to store: the value without its ``aws-chunked`` coding (``None`` when
    nothing is left), as S3 does (``"gzip,aws-chunked"`` -> ``"gzip"``)."""
    if content_encoding is None:
        return None
    rest = [c.strip() for c in content_encoding.split(",")
            if c.strip() and c.strip().lower() != "aws-chunked"]
    return ",".join(rest) or None


def chunk_string_to_sign(amz_date: str, scope: str, previous_signature: str, chunk_sha256: str) -> str:
    """The string to sign of one chunk (``chunk_sha256``: hex SHA-256 of its data)."""
    return "\n".join([CHUNK_ALGORITHM, amz_date, scope, previous_signature, EMPTY_SHA256, chunk_sha256])


def trailer_string_to_sign(amz_date: str, scope: str, previous_signature: str,
                           canonical_trailers: bytes) -> str:
    """The string to sign of the trailer (``canonical_trailers``: ``name:value\\n`` per trailer)."""
    return "\n".join([TRAILER_ALGORITHM, amz_date, scope, previous_signature,
                      hashlib.sha256(canonical_trailers).hexdigest()])


def _framing(message: str) -> SigV4Error:
    return SigV4Error("InvalidRequest", f"Malformed aws-chunked body: {message}", 400)


def _trailer_error(message: str) -> SigV4Error:
    return SigV4Error("MalformedTrailerError", "The request contained trailing data that was not "
                      f"well-formed or did not conform to our published schema: {message}", 400)


def _mismatch(what: str) -> SigV4Error:
    return SigV4Error("SignatureDoesNotMatch", f"The {what} signature we calculated does not match "
                      "the signature you provided.", 403)


class AwsChunkedDecoder:
    """Decodes and verifies one aws-chunked body; see the module docstring.

    * ``mode``: ``PAYLOAD_STREAMING``, ``PAYLOAD_STREAMING_TRAILER`` or
      ``PAYLOAD_STREAMING_UNSIGNED_TRAILER`` (``VerifiedRequest.payload_mode``).
    * ``signing_key`` (32 bytes), ``amz_date``, ``scope``, ``seed_signature`` (64 hex): from the
      verified request; required for the signed modes.
    * ``decoded_length``: ``x-amz-decoded-content-length`` in bytes, or ``None`` (not checked).
    * ``trailer_names``: the trailers declared in ``x-amz-trailer`` (lower case); any other trailer is
      refused.
    * ``checksum``: a :class:`RequestChecksum` updated with the decoded data and finished with the
      trailers (a header or trailer ``x-amz-checksum-*`` is thereby checked), or ``None``.
    * ``max_chunk_size`` / ``max_line``: limits in bytes.
    * ``min_chunk_size``: when > 0, every data chunk but the last must be at least this long, else
      ``InvalidChunkSizeError`` (403) — AWS requires 8192 for signed chunks; a guard against bodies
      of one-byte chunks that cost an HMAC each. Off (0) by default.
    """

    def __init__(self, mode: str, *, signing_key: bytes | None = None, amz_date: str = "",
                 scope: str = "", seed_signature: str = "", decoded_length: int | None = None,
                 trailer_names: Iterable[str] = (), checksum: RequestChecksum | None = None,
                 max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE, max_line: int = DEFAULT_MAX_LINE,
                 min_chunk_size: int = 0):
        if mode not in (PAYLOAD_STREAMING, PAYLOAD_STREAMING_TRAILER, PAYLOAD_STREAMING_UNSIGNED_TRAILER):
            raise ValueError(f"not an aws-chunked payload mode: {mode!r}")
        self.mode = mode
        self.signed = mode != PAYLOAD_STREAMING_UNSIGNED_TRAILER
        if self.signed and (not signing_key or not amz_date or not scope or not seed_signature):
            raise ValueError("a signed aws-chunked body needs the signing key, date, scope and seed")
        self._key = signing_key
        self._date = amz_date
        self._scope = scope
        self._previous = seed_signature.lower()
        self.decoded_length = decoded_length
        self._declared = tuple(n.strip().lower() for n in trailer_names if n.strip())
        self._checksum_state = checksum
        self.max_chunk_size = max_chunk_size
        self.max_line = max_line
        self.min_chunk_size = min_chunk_size
        self._last_size: int | None = None  # size of the previous data chunk

        self._state = _HEADER
        self._line = bytearray()
        self._remaining = 0  # data bytes left in the current chunk
        self._crlf_seen = 0
        self._chunk = bytearray()
        self._chunk_hash = hashlib.sha256()
        self._chunk_signature = ""
        self._blank_before_trailers = False
        self._trailer_lines: list[tuple[str, str]] = []
        self._trailer_signature: str | None = None
        self._error: SigV4Error | None = None
        self.received = 0  # decoded bytes accepted so far
        self.trailers: dict[str, str] = {}
        self.checksum: ChecksumResult | None = None

    @classmethod
    def from_verified(cls, verified: VerifiedRequest,
                      headers: Mapping[str, str] | Iterable[tuple[str, str]], *,
                      max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
                      max_line: int = DEFAULT_MAX_LINE, min_chunk_size: int = 0
                      ) -> AwsChunkedDecoder:
        """A decoder for a verified streaming request: its mode and signing context, the request's
        ``x-amz-decoded-content-length``, ``x-amz-trailer`` and checksum headers.

        Raises ``InvalidArgument`` for a malformed ``x-amz-decoded-content-length`` and what
        :meth:`RequestChecksum.from_headers` raises.
        """
        h = normalize_headers(headers)
        length = None
        values = h.get("x-amz-decoded-content-length")
        if values:
            text = values[0].strip()
            if len(values) > 1 or not re.fullmatch(r"[0-9]{1,18}", text):
                raise SigV4Error("InvalidArgument", "Invalid x-amz-decoded-content-length.", 400,
                                 {"ArgumentName": "x-amz-decoded-content-length"})
            length = int(text)
        trailer_names = [n for v in h.get("x-amz-trailer", ()) for n in v.split(",")]
        return cls(verified.payload_mode, signing_key=verified.signing_key,
                   amz_date=verified.amz_date, scope=verified.scope,
                   seed_signature=verified.signature, decoded_length=length,
                   trailer_names=trailer_names, checksum=RequestChecksum.from_headers(h),
                   max_chunk_size=max_chunk_size, max_line=max_line,
                   min_chunk_size=min_chunk_size)

    @property
    def done(self) -> bool:
        """Whether the whole body (final chunk and trailers) has been read and checked."""
        return self._state == _DONE

    # -- feeding ------------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Consume the next block of the encoded body; return the decoded payload it completed
        (possibly nothing; signed chunks come out whole once their signature matched). When it
        raises, nothing of this block is returned and the body must be discarded."""
        if self._error is not None:
            raise self._error
        try:
            return self._feed(bytes(data))
        except SigV4Error as exc:
            self._error = exc
            raise

    def finish(self) -> ChecksumResult | None:
        """Declare the end of the body. Raises ``IncompleteBody`` unless the final chunk and the
        trailers were all received; returns :attr:`checksum`."""
        if self._error is not None:
            raise self._error
        try:
            if self._state == _TRAILER and self._blank_before_trailers and not self._trailer_lines:
                # "0\r\n\r\n" and nothing after: no trailers were sent at all.
                self._complete()
            if self._state != _DONE:
                raise SigV4Error("IncompleteBody", "The request body terminated unexpectedly", 400)
            return self.checksum
        except SigV4Error as exc:
            self._error = exc
            raise

    def _feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        pos, end = 0, len(data)
        view = memoryview(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                piece = view[pos:pos + take]
                pos += take
                self._remaining -= take
                if self.signed:
                    self._chunk_hash.update(piece)
                    self._chunk += piece
                else:
                    block = bytes(piece)
                    self._accept(block)
                    out.append(block)
                if self._remaining == 0:
                    if self.signed:
                        out.append(self._verify_chunk())
                    self._state = _DATA_CRLF
                    self._crlf_seen = 0
            elif state == _DATA_CRLF:
                expected = b"\r\n"[self._crlf_seen]
                if data[pos] != expected:
                    raise _framing("chunk data is not followed by CRLF")
                pos += 1
                self._crlf_seen += 1
                if self._crlf_seen == 2:
                    self._state = _HEADER
            elif state == _DONE:
                raise _framing("data after the end of the body")
            else:  # _HEADER or _TRAILER: a CRLF-terminated line
                nl = data.find(b"\n", pos)
                stop = end if nl < 0 else nl + 1
                if len(self._line) + (stop - pos) > self.max_line + 2:
                    raise _framing(f"a line is longer than {self.max_line} bytes")
                self._line += view[pos:stop]
                pos = stop
                if nl < 0:
                    break
                line = bytes(self._line)
                self._line.clear()
                if not line.endswith(b"\r\n"):
                    raise _framing("a line does not end with CRLF")
                line = line[:-2]
                if state == _HEADER:
                    last = self._chunk_header(line)
                    if last is not None:
                        out.append(last)
                else:
                    self._trailer_line(line)
        return out

    def _accept(self, block: bytes) -> None:
        self.received += len(block)
        if self._checksum_state is not None:
            self._checksum_state.update(block)

    # -- chunks -------------------------------------------------------------------------------------

    def _chunk_header(self, line: bytes) -> bytes | None:
        size_text, _, extensions = line.partition(b";")
        if not _HEX_SIZE_RE.fullmatch(size_text):
            raise _framing("invalid chunk size")
        size = int(size_text, 16)
        if size > self.max_chunk_size:
            raise _framing(f"chunk of {size} bytes exceeds the limit of {self.max_chunk_size} bytes")
        if self.decoded_length is not None and self.received + size > self.decoded_length:
            raise _framing("more data than x-amz-decoded-content-length")
        if size and self._last_size is not None and self._last_size < self.min_chunk_size:
            raise SigV4Error("InvalidChunkSizeError", "Only the last chunk is allowed to have a size "
                             f"less than {self.min_chunk_size} bytes", 403)
        self._last_size = size
        if self.signed:
            name, eq, sig = extensions.partition(b"=")
            if name.strip() != b"chunk-signature" or not eq:
                raise _framing("missing chunk-signature")
            self._chunk_signature = sig.strip().decode("latin-1")
        elif extensions and extensions.strip().startswith(b"chunk-signature"):
            raise _framing("chunk-signature in an unsigned aws-chunked body")
        self._chunk_hash = hashlib.sha256()
        self._chunk = bytearray()
        if size:
            self._remaining = size
            self._state = _DATA
            return None
        # The final, empty chunk: its signature seals the chunk sequence.
        last = self._verify_chunk() if self.signed else None
        self._state = _TRAILER
        return last or None

    def _verify_chunk(self) -> bytes:
        sts = chunk_string_to_sign(self._date, self._scope, self._previous,
                                   self._chunk_hash.hexdigest())
        expected = hmac.new(self._key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
        if not signatures_equal(expected, self._chunk_signature):
            raise _mismatch("chunk")
        self._previous = expected
        block = bytes(self._chunk)
        self._chunk = bytearray()
        if block:
            self._accept(block)
        return block

    # -- trailers -----------------------------------------------------------------------------------

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            if (not self._trailer_lines and self._trailer_signature is None and self._declared
                    and not self._blank_before_trailers):
                # Some encoders close the empty final chunk with its own CRLF before the trailers;
                # "0\r\n\r\n" then either ends the body (finish) or trailers follow.
                self._blank_before_trailers = True
                return
            self._complete()
            return
        if self._trailer_signature is not None:
            raise _trailer_error("x-amz-trailer-signature must be the last trailer")
        if len(self._trailer_lines) >= MAX_TRAILERS:
            raise _trailer_error("too many trailers")
        name, colon, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        if not colon or not name:
            raise _trailer_error("a trailer line is not name:value")
        if name == "x-amz-trailer-signature":
            if not self.signed:
                raise _trailer_error("x-amz-trailer-signature in an unsigned aws-chunked body")
            self._trailer_signature = value
            return
        if name not in self._declared:
            raise _trailer_error(f"trailer {name} was not declared in x-amz-trailer")
        if name in self.trailers:
            raise _trailer_error(f"trailer {name} appears twice")
        self._trailer_lines.append((name, value))
        self.trailers[name] = value

    def _complete(self) -> None:
        if self.mode == PAYLOAD_STREAMING and self._trailer_lines:
            raise _trailer_error("trailers in a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body")
        if self.mode == PAYLOAD_STREAMING_TRAILER:
            if self._trailer_signature is None:
                raise _trailer_error("x-amz-trailer-signature is missing")
            canonical = "".join(f"{n}:{v}\n" for n, v in self._trailer_lines).encode("latin-1")
            sts = trailer_string_to_sign(self._date, self._scope, self._previous, canonical)
            expected = hmac.new(self._key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
            if not signatures_equal(expected, self._trailer_signature):
                raise _mismatch("trailer")
            self._previous = expected
        missing = [n for n in self._declared if n not in self.trailers]
        if missing:
            raise _trailer_error(f"declared trailer {', '.join(missing)} is missing")
        if self.decoded_length is not None and self.received != self.decoded_length:
            raise SigV4Error("IncompleteBody", "You did not provide the number of bytes specified by "
                             "the x-amz-decoded-content-length HTTP header.", 400)
        if self._checksum_state is not None:
            self.checksum = self._checksum_state.finish(self.trailers)
        self._state = _DONE


def decode_all(decoder: AwsChunkedDecoder, blocks: Sequence[bytes] | Iterable[bytes]) -> bytes:
    """Feed every block and finish; the whole decoded payload (for tests and small bodies only)."""
    out = bytearray()
    for block in blocks:
        for piece in decoder.feed(block):
            out += piece
    decoder.finish()
    return bytes(out)
