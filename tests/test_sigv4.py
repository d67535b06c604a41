"""SigV4 verification (shared/auth/sigv4.py), aws-chunked decoding (shared/auth/aws_chunked.py) and
request checksums (shared/auth/checksums.py), against signatures made by botocore's own signers
(S3SigV4Auth, S3SigV4QueryAuth, and a real botocore S3 client whose requests are captured before they
would be sent) and against the worked examples of the AWS S3 API reference. Pure logic, no servers."""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import random
import time
import zlib
from urllib.parse import quote, urlsplit

import pytest

botocore = pytest.importorskip("botocore")

import botocore.session  # noqa: E402
from botocore import httpchecksum  # noqa: E402
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest, AWSResponse  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from shared.auth import checksums  # noqa: E402
from shared.auth.aws_chunked import AwsChunkedDecoder, decode_all, strip_aws_chunked  # noqa: E402
from shared.auth.checksums import Checksum, RequestChecksum, checksum_of  # noqa: E402
from shared.auth.sigv4 import (  # noqa: E402
    PAYLOAD_SHA256,
    PAYLOAD_STREAMING,
    PAYLOAD_STREAMING_TRAILER,
    PAYLOAD_STREAMING_UNSIGNED_TRAILER,
    PAYLOAD_UNSIGNED,
    ContentSha256Verifier,
    SigningKeyCache,
    SigV4Error,
    SigV4Request,
    auth_type,
    derive_signing_key,
    parse_request,
    verify,
)

AK = "RKTESTACCESSKEY00001"
SK = "wJal+rXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLE+/"  # '+' and '/' as RingFS secrets have
REGION = "us-east-1"
ENDPOINT = "http://127.0.0.1:9000"

# Object keys as users write them: spaces, '+', '%', unicode, '~', '=' and '&', S3's odd cases.
SPECIAL_KEYS = [
    "plain.txt",
    "with space/and  two  spaces.txt",
    "plus+sign+",
    "per%cent%20literal%2F",
    "ünïcödé/ключ/鍵.bin",
    "tilde~name",
    "eq=amp&q?hash#",
    "a//double//slash/",
    "./dot/../dotdot/.",
    "star*(paren)!'quote",
    "semi;colon,comma:at@dollar$",
    "emoji-😀",
]


class _Crc32cForBotocore(httpchecksum.BaseChecksum):
    """CRC32C for botocore, which has it only with awscrt: backed by shared/auth/checksums, so the
    client frames bodies with crc32c trailers exactly as boto3 does."""

    def __init__(self):
        self._c = Checksum("crc32c")

    def update(self, chunk):
        self._c.update(chunk)

    def digest(self):
        return self._c.digest()


def lookup(key_id: str) -> str | None:
    return SK if key_id == AK else None


def _text(v) -> str:
    return v.decode("latin-1") if isinstance(v, bytes) else v


def as_request(method: str, url: str, headers) -> SigV4Request:
    """What the server sees: the raw path and query of the URL, and the headers plus the ``Host``
    that urllib3 adds on the wire (botocore's prepared request does not carry it)."""
    parts = urlsplit(url)
    pairs = [(_text(k), _text(v)) for k, v in (headers.items() if hasattr(headers, "items") else headers)]
    if not any(k.lower() == "host" for k, _ in pairs):
        pairs.append(("Host", parts.netloc))
    return SigV4Request(method, parts.path, parts.query, pairs)


def sign(method="PUT", path="/bucket/key", query="", headers=None, body=b"", signer=S3SigV4Auth,
         region=REGION, creds=None, service="s3"):
    """Sign with botocore's signer; returns (SigV4Request, body)."""
    url = ENDPOINT + path + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer(creds or Credentials(AK, SK), service, region).add_auth(req)
    prepared = req.prepare()
    return as_request(method, prepared.url, prepared.headers.items()), body


def presign(method="GET", path="/bucket/key", query="", headers=None, expires=300, creds=None,
            region=REGION):
    url = ENDPOINT + path + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    S3SigV4QueryAuth(creds or Credentials(AK, SK), "s3", region, expires=expires).add_auth(req)
    prepared = req.prepare()
    return as_request(method, prepared.url, [("Host", urlsplit(url).netloc), *(headers or {}).items()])


def replace_header(request: SigV4Request, name: str, value: str) -> SigV4Request:
    headers = [(k, value if k.lower() == name.lower() else v) for k, v in request.headers]
    return SigV4Request(request.method, request.raw_path, request.raw_query, headers)


def add_header(request: SigV4Request, name: str, value: str) -> SigV4Request:
    return SigV4Request(request.method, request.raw_path, request.raw_query,
                        [*request.headers, (name, value)])


def expect(code: str, fn, *args, **kwargs) -> SigV4Error:
    with pytest.raises(SigV4Error) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, (info.value.code, info.value.message)
    return info.value


# ---------------------------------------------------------------------------------------------------
# A real botocore S3 client; requests are captured at "before-send" and never leave the process.


class _RawBody:
    def __init__(self, data: bytes = b""):
        self._data = data

    def stream(self, **_):
        yield self._data

    def read(self, *_, **__):
        data, self._data = self._data, b""
        return data


class CapturingClient:
    def __init__(self, endpoint=ENDPOINT, **config):
        session = botocore.session.get_session()
        self.client = session.create_client(
            "s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id=AK,
            aws_secret_access_key=SK,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, **config))
        self.sent: list[tuple[str, str, list, bytes]] = []
        self.client.meta.events.register("before-send.s3", self._capture)

    def _capture(self, request, **_):
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        self.sent.append((request.method, request.url, list(request.headers.items()), body or b""))
        return AWSResponse(request.url, 200, {}, _RawBody())

    def last(self) -> tuple[SigV4Request, bytes]:
        method, url, headers, body = self.sent[-1]
        return as_request(method, url, headers), body


@pytest.fixture(scope="module")
def http_client():
    return CapturingClient(ENDPOINT)


@pytest.fixture(scope="module")
def https_client():
    # boto3 >= 1.36 behaviour over TLS: unsigned payload, aws-chunked with a CRC32 trailer.
    return CapturingClient("https://127.0.0.1:9000")


def read_verified_body(verified, request: SigV4Request, body: bytes) -> tuple[bytes, object]:
    """What an S3 endpoint does with the body after verify(): decode/check it; returns (payload,
    checksum result)."""
    if verified.is_streaming:
        decoder = AwsChunkedDecoder.from_verified(verified, request.headers)
        rng = random.Random(len(body))
        pieces, pos = [], 0
        while pos < len(body):
            step = rng.randint(1, 7000)
            pieces.append(body[pos:pos + step])
            pos += step
        return decode_all(decoder, pieces), decoder.checksum
    check = verified.payload_verifier()
    if check is not None:
        check.update(body)
        check.finish()
    rc = RequestChecksum.from_headers(request.headers)
    rc.update(body)
    return body, rc.finish()


# ---------------------------------------------------------------------------------------------------
# Header auth: botocore S3SigV4Auth


def test_botocore_header_signature_accepted():
    req, body = sign("PUT", "/bucket/key.txt", headers={"Content-Type": "text/plain",
                                                       "x-amz-meta-color": "blue"}, body=b"hello")
    v = verify(req, lookup, REGION)
    assert v.access_key_id == AK and v.auth_type == "header" and v.payload_mode == PAYLOAD_SHA256
    assert v.content_sha256 == hashlib.sha256(b"hello").hexdigest()
    assert v.scope.endswith(f"/{REGION}/s3/aws4_request") and len(v.signing_key) == 32
    assert "x-amz-meta-color" in v.signed_headers
    assert "signing_key" not in repr(v) and SK not in repr(v)
    checker = v.payload_verifier()
    checker.update(b"hel")
    checker.update(memoryview(b"lo"))
    assert checker.finish() == v.content_sha256


def test_canonical_form_reproduces_botocore_exactly():
    """The decoded-and-re-encoded canonical request is the one botocore signed (no fallback needed)."""
    for key in SPECIAL_KEYS:
        path = "/bucket/" + quote(key, safe="/~")
        query = "prefix=" + quote(key, safe="-_.~") + "&uploads&list-type=2"
        req, _ = sign("GET", path, query)
        parsed = parse_request(req, REGION)
        assert len(parsed.canonical_requests) == 1, key
        verify(req, lookup, REGION)


@pytest.mark.parametrize("tamper", ["header", "path", "query", "body-hash", "method", "host"])
def test_header_auth_tampering_is_signature_mismatch(tamper):
    req, _ = sign("PUT", "/bucket/key", "versionId=1", headers={"x-amz-meta-a": "1"}, body=b"data")
    if tamper == "header":
        req = replace_header(req, "x-amz-meta-a", "2")
    elif tamper == "path":
        req = SigV4Request(req.method, "/bucket/key2", req.raw_query, req.headers)
    elif tamper == "query":
        req = SigV4Request(req.method, req.raw_path, "versionId=2", req.headers)
    elif tamper == "body-hash":
        req = replace_header(req, "x-amz-content-sha256", hashlib.sha256(b"other").hexdigest())
    elif tamper == "method":
        req = SigV4Request("POST", req.raw_path, req.raw_query, req.headers)
    else:
        req = replace_header(req, "host", "evil.example:9000")
    err = expect("SignatureDoesNotMatch", verify, req, lookup, REGION)
    assert err.status == 403 and err.extra["AWSAccessKeyId"] == AK
    assert SK not in str(err.extra) and SK not in err.message


def test_body_not_matching_signed_sha256():
    req, _ = sign("PUT", "/bucket/key", body=b"the signed body")
    v = verify(req, lookup, REGION)
    checker = v.payload_verifier()
    checker.update(b"another body")
    err = expect("XAmzContentSHA256Mismatch", checker.finish)
    assert err.status == 400
    with pytest.raises(SigV4Error):
        ContentSha256Verifier(hashlib.sha256(b"x").hexdigest()).finish()


def test_wrong_secret_and_unknown_key():
    req, _ = sign(creds=Credentials(AK, SK + "x"))
    expect("SignatureDoesNotMatch", verify, req, lookup, REGION)
    req, _ = sign(creds=Credentials("RKUNKNOWN", SK))
    err = expect("InvalidAccessKeyId", verify, req, lookup, REGION)
    assert err.status == 403 and err.extra["AWSAccessKeyId"] == "RKUNKNOWN"


def test_wrong_region_and_service():
    req, _ = sign(region="eu-west-1")
    err = expect("AuthorizationHeaderMalformed", verify, req, lookup, REGION)
    assert err.status == 400 and err.extra["Region"] == REGION and "eu-west-1" in err.message
    req, _ = sign(signer=SigV4Auth, service="ec2", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert "service" in expect("AuthorizationHeaderMalformed", verify, req, lookup, REGION).message


def test_clock_skew():
    req, _ = sign()
    now = time.time()
    verify(req, lookup, REGION, now=now + 14 * 60)
    verify(req, lookup, REGION, now=now - 14 * 60)
    for skew in (16 * 60, -16 * 60):
        err = expect("RequestTimeTooSkewed", verify, req, lookup, REGION, now=now + skew)
        assert err.status == 403 and err.extra["MaxAllowedSkewMilliseconds"] == "900000"


def test_unsigned_amz_header_is_refused():
    req, _ = sign()
    req = add_header(req, "x-amz-meta-injected", "1")
    err = expect("AccessDenied", verify, req, lookup, REGION)
    assert err.extra["HeadersNotSigned"] == "x-amz-meta-injected"
    # Unsigned non-x-amz headers (User-Agent, Expect, ...) are fine, as botocore leaves them out.
    req, _ = sign(headers={"Expect": "100-continue"})
    verify(add_header(req, "User-Agent", "curl"), lookup, REGION)


def test_date_header_instead_of_x_amz_date():
    # botocore signs with Date (and drops X-Amz-Date) when the request has a Date header.
    req, _ = sign(headers={"Date": "Mon, 01 Jan 2001 00:00:00 GMT"})
    names = {k.lower() for k, _ in req.headers}
    assert "date" in names and "x-amz-date" not in names
    v = verify(req, lookup, REGION)
    assert "date" in v.signed_headers and abs(v.request_time - time.time()) < 60


def test_repeated_headers_and_whitespace():
    from botocore.compat import HTTPHeaders

    url = ENDPOINT + "/bucket/key"
    req = AWSRequest(method="PUT", url=url, data=b"x")
    # botocore's signer joins repeated values with ","; an HTTPHeaders (email.message) holds repeats.
    req.headers = HTTPHeaders()
    req.headers["x-amz-meta-multi"] = "  one   two  "
    req.headers["x-amz-meta-multi"] = "three"
    req.headers["x-amz-meta-tabs"] = "a \t  b"
    S3SigV4Auth(Credentials(AK, SK), "s3", REGION).add_auth(req)
    request = as_request("PUT", url, list(req.headers.items()))
    assert sum(1 for k, _ in request.headers if k.lower() == "x-amz-meta-multi") == 2
    verify(request, lookup, REGION)


def test_missing_content_sha256_and_malformed_headers():
    req, _ = sign(signer=SigV4Auth)  # the generic signer sends no x-amz-content-sha256
    err = expect("InvalidRequest", verify, req, lookup, REGION)
    assert "x-amz-content-sha256" in err.message
    good, _ = sign()
    expect("InvalidArgument", verify, replace_header(good, "x-amz-content-sha256", "nonsense"),
           lookup, REGION)
    auth = next(v for k, v in good.headers if k.lower() == "authorization")
    for bad in (auth.replace("Credential=", "Credentail="), auth.replace(", Signature=", ", "),
                auth.replace(f"Credential={AK}/", "Credential="),
                auth.replace("aws4_request", "aws5_request")):
        expect("AuthorizationHeaderMalformed", verify, replace_header(good, "authorization", bad),
               lookup, REGION)
    scope_date = auth.split("Credential=")[1].split("/")[1]
    other_date = "19990101"
    err = expect("AuthorizationHeaderMalformed", verify,
                 replace_header(good, "authorization", auth.replace(scope_date, other_date)),
                 lookup, REGION)
    assert "date" in err.message.lower()
    expect("InvalidRequest", verify, replace_header(good, "authorization", "AWS AKID:c2lnbmF0dXJl"),
           lookup, REGION)
    expect("AccessDenied", verify, replace_header(good, "x-amz-date", "yesterday"), lookup, REGION)
    expect("AccessDenied", verify, replace_header(good, "x-amz-date", "20241399T000000Z"), lookup,
           REGION)
    # host must be signed.
    no_host = replace_header(good, "authorization", auth.replace("SignedHeaders=host;", "SignedHeaders="))
    assert expect("AccessDenied", verify, no_host, lookup, REGION).extra["HeadersNotSigned"] == "host"


def test_security_token_is_rejected():
    req, _ = sign(creds=Credentials(AK, SK, "session-token"))
    assert expect("InvalidToken", verify, req, lookup, REGION).status == 400
    expect("InvalidToken", verify, presign(creds=Credentials(AK, SK, "session-token")), lookup, REGION)


def test_anonymous_and_double_auth():
    anon = SigV4Request("GET", "/bucket/key", "", [("Host", "127.0.0.1:9000")])
    assert auth_type(anon) is None
    expect("AccessDenied", verify, anon, lookup, REGION)
    header_req, _ = sign("GET")
    query_req = presign("GET")
    assert auth_type(header_req) == "header" and auth_type(query_req) == "query"
    both = SigV4Request("GET", query_req.raw_path, query_req.raw_query, header_req.headers)
    expect("InvalidArgument", verify, both, lookup, REGION)


def test_signing_key_cache_is_bounded():
    cache = SigningKeyCache(maxsize=2)
    k1 = cache.get(SK, "20240101", REGION)
    assert k1 == derive_signing_key(SK, "20240101", REGION) and cache.get(SK, "20240101", REGION) is k1
    cache.get(SK, "20240102", REGION)
    cache.get(SK, "20240103", REGION)
    assert len(cache._keys) == 2


# ---------------------------------------------------------------------------------------------------
# A real botocore client: what boto3 actually puts on the wire


@pytest.mark.parametrize("key", SPECIAL_KEYS)
def test_botocore_client_requests_with_special_keys(http_client, https_client, key):
    for client in (http_client, https_client):
        client.client.put_object(Bucket="bucket", Key=key, Body=b"payload of " + key.encode(),
                                 Metadata={"name": "value"})
        req, body = client.last()
        v = verify(req, lookup, REGION)
        payload, result = read_verified_body(v, req, body)
        assert payload == b"payload of " + key.encode()
        assert result.algorithm == "crc32"  # boto3's default flexible checksum
        assert result.value == base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()

        client.client.list_objects_v2(Bucket="bucket", Prefix=key, Delimiter="/",
                                      StartAfter=key + "=&+")
        req, _ = client.last()
        assert "prefix=" in req.raw_query
        verify(req, lookup, REGION)

        client.client.head_object(Bucket="bucket", Key=key, VersionId="v=1&2+3 ~")
        verify(client.last()[0], lookup, REGION)


def test_botocore_client_copy_and_multipart(http_client):
    c = http_client.client
    c.copy_object(Bucket="dst", Key="new key+", CopySource={"Bucket": "src", "Key": "ü old=&"})
    req, _ = http_client.last()
    assert any(k.lower() == "x-amz-copy-source" for k, _ in req.headers)
    verify(req, lookup, REGION)
    c.upload_part(Bucket="b", Key="k k", UploadId="id+/=", PartNumber=3, Body=b"part")
    req, body = http_client.last()
    v = verify(req, lookup, REGION)
    read_verified_body(v, req, body)


def test_botocore_client_unsigned_trailer_sha256(https_client):
    https_client.client.put_object(Bucket="b", Key="k", Body=b"z" * 5000, ChecksumAlgorithm="SHA256")
    req, body = https_client.last()
    v = verify(req, lookup, REGION)
    assert v.payload_mode == PAYLOAD_STREAMING_UNSIGNED_TRAILER
    payload, result = read_verified_body(v, req, body)
    assert payload == b"z" * 5000
    assert result.algorithm == "sha256"
    assert result.value == base64.b64encode(hashlib.sha256(payload).digest()).decode()


def test_botocore_client_unsigned_trailer_crc32c(monkeypatch):
    """botocore needs awscrt for CRC32C; give it one (backed by the CRC of shared/auth/checksums) and
    let the client frame the body with its trailer exactly as boto3 does."""
    if not isinstance(getattr(httpchecksum, "_CHECKSUM_CLS", None), dict) or not isinstance(
            getattr(httpchecksum, "_SUPPORTED_CHECKSUM_ALGORITHMS", None), list):
        pytest.skip("botocore's checksum registry changed")

    monkeypatch.setitem(httpchecksum._CHECKSUM_CLS, "crc32c", _Crc32cForBotocore)
    monkeypatch.setattr(httpchecksum, "_SUPPORTED_CHECKSUM_ALGORITHMS",
                        [*httpchecksum._SUPPORTED_CHECKSUM_ALGORITHMS, "crc32c"])
    client = CapturingClient("https://127.0.0.1:9000")
    data = b"a" * (65 * 1024)
    client.client.put_object(Bucket="b", Key="k", Body=data, ChecksumAlgorithm="CRC32C")
    req, body = client.last()
    assert b"x-amz-checksum-crc32c:sOO8/Q==" in body  # the AWS documentation's value for this data
    v = verify(req, lookup, REGION)
    payload, result = read_verified_body(v, req, body)
    assert payload == data and (result.algorithm, result.value) == ("crc32c", "sOO8/Q==")


def test_botocore_client_trailer_tampering(https_client):
    https_client.client.put_object(Bucket="b", Key="k", Body=b"hello world")
    req, body = https_client.last()
    v = verify(req, lookup, REGION)
    wrong = body.replace(b"x-amz-checksum-crc32:DUoRhQ==", b"x-amz-checksum-crc32:AAAAAA==")
    assert wrong != body
    expect("BadDigest", decode_all, AwsChunkedDecoder.from_verified(v, req.headers), [wrong])
    corrupted = body.replace(b"hello", b"jello")
    expect("BadDigest", decode_all, AwsChunkedDecoder.from_verified(v, req.headers), [corrupted])
    truncated = body[: body.index(b"0\r\n")]
    expect("IncompleteBody", decode_all, AwsChunkedDecoder.from_verified(v, req.headers), [truncated])
    no_trailer = body[: body.index(b"x-amz-checksum")] + b"\r\n"
    expect("MalformedTrailerError", decode_all, AwsChunkedDecoder.from_verified(v, req.headers),
           [no_trailer])


def test_botocore_client_header_checksum_mismatch(http_client):
    http_client.client.put_object(Bucket="b", Key="k", Body=b"hello world")
    req, body = http_client.last()
    v = verify(req, lookup, REGION)
    assert v.payload_mode == PAYLOAD_SHA256
    rc = RequestChecksum.from_headers(req.headers)
    rc.update(b"hello World")
    assert expect("BadDigest", rc.finish).status == 400


# ---------------------------------------------------------------------------------------------------
# Presigned URLs: botocore S3SigV4QueryAuth and generate_presigned_url


def test_presigned_url_accepted():
    req = presign("GET", "/bucket/key", expires=600)
    assert "X-Amz-Signature=" in req.raw_query
    v = verify(req, lookup, REGION)
    assert v.auth_type == "query" and v.payload_mode == PAYLOAD_UNSIGNED
    assert v.expires_at == pytest.approx(v.request_time + 600)


@pytest.mark.parametrize("key", SPECIAL_KEYS)
def test_client_presigned_urls_with_special_keys(http_client, key):
    c = http_client.client
    url = c.generate_presigned_url("get_object", ExpiresIn=120, Params={
        "Bucket": "bucket", "Key": key,
        "ResponseContentDisposition": f'attachment; filename="{key} ü a+b=c&d.txt"',
        "VersionId": "1+2=3&4 5~"})
    parts = urlsplit(url)
    req = SigV4Request("GET", parts.path, parts.query, [("Host", parts.netloc)])
    assert len(parse_request(req, REGION).canonical_requests) == 1
    verify(req, lookup, REGION)
    tampered = SigV4Request("GET", parts.path, parts.query.replace("response-content-disposition=",
                                                                   "response-content-disposition=x"),
                            req.headers)
    expect("SignatureDoesNotMatch", verify, tampered, lookup, REGION)


def test_presigned_put_with_signed_headers(http_client):
    url = http_client.client.generate_presigned_url("put_object", ExpiresIn=60, Params={
        "Bucket": "b", "Key": "up load", "Metadata": {"k": "v"}, "ContentType": "text/plain"})
    parts = urlsplit(url)
    req = SigV4Request("PUT", parts.path, parts.query, [
        ("Host", parts.netloc), ("x-amz-meta-k", "v"), ("Content-Type", "text/plain")])
    v = verify(req, lookup, REGION)
    assert v.signed_headers == ("content-type", "host", "x-amz-meta-k")
    expect("SignatureDoesNotMatch", verify, replace_header(req, "x-amz-meta-k", "w"), lookup, REGION)
    expect("SignatureDoesNotMatch", verify, replace_header(req, "content-type", "text/html"), lookup,
           REGION)
    # a signed header the client then leaves out
    without = SigV4Request("PUT", parts.path, parts.query, [("Host", parts.netloc), ("x-amz-meta-k", "v")])
    expect("SignatureDoesNotMatch", verify, without, lookup, REGION)


def test_presigned_expired_and_not_yet_valid():
    req = presign(expires=60)
    now = time.time()
    verify(req, lookup, REGION, now=now + 50)
    err = expect("AccessDenied", verify, req, lookup, REGION, now=now + 61)
    assert err.message == "Request has expired" and err.status == 403
    err = expect("AccessDenied", verify, req, lookup, REGION, now=now - 16 * 60)
    assert "not valid yet" in err.message


def test_presigned_tampering_and_parameter_errors():
    req = presign(query="versionId=7")
    for old, new in (("versionId=7", "versionId=8"), ("X-Amz-Expires=300", "X-Amz-Expires=301")):
        bad = SigV4Request(req.method, req.raw_path, req.raw_query.replace(old, new), req.headers)
        expect("SignatureDoesNotMatch", verify, bad, lookup, REGION)
    bad = SigV4Request(req.method, "/bucket/other", req.raw_query, req.headers)
    expect("SignatureDoesNotMatch", verify, bad, lookup, REGION)
    expect("SignatureDoesNotMatch", verify, req, lambda k: SK + "x", REGION)
    expect("InvalidAccessKeyId", verify, req, lambda k: None, REGION)
    # an x-amz-* header the URL did not sign
    assert expect("AccessDenied", verify, add_header(req, "x-amz-acl", "public-read"), lookup,
                  REGION).extra["HeadersNotSigned"] == "x-amz-acl"
    expect("AuthorizationQueryParametersError", verify, presign(expires=604801), lookup, REGION)
    verify(presign(expires=604800), lookup, REGION)
    expect("AuthorizationQueryParametersError", verify, presign(region="eu-west-1"), lookup, REGION)
    missing = SigV4Request("GET", req.raw_path, "&".join(p for p in req.raw_query.split("&")
                                                         if not p.startswith("X-Amz-Date=")),
                           req.headers)
    expect("AuthorizationQueryParametersError", verify, missing, lookup, REGION)
    bad_alg = SigV4Request("GET", req.raw_path, req.raw_query.replace("AWS4-HMAC-SHA256", "AWS4-X"),
                           req.headers)
    expect("AuthorizationQueryParametersError", verify, bad_alg, lookup, REGION)


def test_sigv2_presigned_url_is_not_supported():
    url = botocore.session.get_session().create_client(
        "s3", region_name=REGION, endpoint_url=ENDPOINT, aws_access_key_id=AK,
        aws_secret_access_key=SK, config=Config(signature_version="s3")).generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "k"})
    parts = urlsplit(url)
    expect("InvalidRequest", verify, SigV4Request("GET", parts.path, parts.query,
                                                  [("Host", parts.netloc)]), lookup, REGION)


# ---------------------------------------------------------------------------------------------------
# aws-chunked: the AWS documentation examples (sigv4-streaming.html, sigv4-streaming-trailers.html)

DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_NOW = calendar.timegm((2013, 5, 24, 0, 0, 0))
DOC_DATA = b"a" * 66560  # 64 KiB + 1 KiB of 'a'


def _doc_headers(payload: str, signed: str, signature: str, extra=()):
    return [("Host", "s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("x-amz-content-sha256", payload),
            ("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", "66560"),
            ("Content-Length", "66824"), *extra,
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
             f"s3/aws4_request,SignedHeaders={signed},Signature={signature}")]


def _doc_body(sigs: list[str], tail: bytes) -> bytes:
    return (f"10000;chunk-signature={sigs[0]}\r\n".encode() + b"a" * 65536 + b"\r\n"
            + f"400;chunk-signature={sigs[1]}\r\n".encode() + b"a" * 1024 + b"\r\n"
            + f"0;chunk-signature={sigs[2]}\r\n".encode() + tail)


DOC_SIGNED = _doc_headers(
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
    "x-amz-decoded-content-length;x-amz-storage-class",
    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")
DOC_SIGNED_BODY = _doc_body(["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                             "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                             "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"],
                            b"\r\n")
# The trailer example signs x-amz-trailer and, unlike the first example, not content-length.
DOC_TRAILER = _doc_headers(
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
    "x-amz-storage-class;x-amz-trailer",
    "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
    extra=[("x-amz-trailer", "x-amz-checksum-crc32c")])
DOC_TRAILER_BODY = _doc_body(
    ["b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
     "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
     "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"],
    b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
    b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n")


def _doc_verified(headers):
    req = SigV4Request("PUT", "/examplebucket/chunkObject.txt", "", headers)
    return verify(req, lambda k: DOC_SECRET if k == "AKIAIOSFODNN7EXAMPLE" else None, "us-east-1",
                  now=DOC_NOW), headers


def _pieces(body: bytes, seed: int, most: int = 9000) -> list[bytes]:
    rng, out, pos = random.Random(seed), [], 0
    while pos < len(body):
        step = rng.randint(1, most)
        out.append(body[pos:pos + step])
        pos += step
    return out


def test_aws_documented_chunked_upload():
    v, headers = _doc_verified(DOC_SIGNED)
    assert v.payload_mode == PAYLOAD_STREAMING and v.signature.startswith("4f232c43")
    assert len(DOC_SIGNED_BODY) == 66824  # the example's Content-Length
    for seed in range(3):
        decoder = AwsChunkedDecoder.from_verified(v, headers)
        blocks = []
        for piece in _pieces(DOC_SIGNED_BODY, seed):
            blocks.extend(decoder.feed(piece))
        assert decoder.done and decoder.finish() is None
        assert [len(b) for b in blocks] == [65536, 1024] and b"".join(blocks) == DOC_DATA


def test_aws_documented_chunked_upload_with_trailer():
    v, headers = _doc_verified(DOC_TRAILER)
    assert v.payload_mode == PAYLOAD_STREAMING_TRAILER
    decoder = AwsChunkedDecoder.from_verified(v, headers)
    assert decode_all(decoder, _pieces(DOC_TRAILER_BODY, 7)) == DOC_DATA
    assert decoder.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    assert (decoder.checksum.algorithm, decoder.checksum.value) == ("crc32c", "sOO8/Q==")


def test_doc_example_corrupted_chunk_and_wrong_signature():
    v, headers = _doc_verified(DOC_SIGNED)
    corrupted = bytearray(DOC_SIGNED_BODY)
    corrupted[200] = ord("b")
    decoder = AwsChunkedDecoder.from_verified(v, headers)
    got = []
    with pytest.raises(SigV4Error) as info:
        for piece in _pieces(bytes(corrupted), 1):
            got.extend(decoder.feed(piece))
    assert info.value.code == "SignatureDoesNotMatch" and info.value.status == 403
    assert got == []  # nothing unverified came out
    # the error sticks
    expect("SignatureDoesNotMatch", decoder.feed, b"")
    expect("SignatureDoesNotMatch", decoder.finish)

    wrong_sig = DOC_SIGNED_BODY.replace(b"0055627c", b"0055627d")
    decoder = AwsChunkedDecoder.from_verified(v, headers)
    got = []
    with pytest.raises(SigV4Error) as info:
        for piece in _pieces(wrong_sig, 2, most=1000):
            got.extend(decoder.feed(piece))
    assert info.value.code == "SignatureDoesNotMatch" and [len(b) for b in got] == [65536]

    final_sig = DOC_SIGNED_BODY.replace(b"b6c6ea8a", b"b6c6ea8b")
    expect("SignatureDoesNotMatch", decode_all, AwsChunkedDecoder.from_verified(v, headers), [final_sig])
    # a different seed (the request signature) breaks the chain from the first chunk
    other = AwsChunkedDecoder(PAYLOAD_STREAMING, signing_key=v.signing_key, amz_date=v.amz_date,
                              scope=v.scope, seed_signature="0" * 64, decoded_length=66560)
    expect("SignatureDoesNotMatch", decode_all, other, [DOC_SIGNED_BODY])


def test_doc_example_trailer_tampering():
    v, headers = _doc_verified(DOC_TRAILER)
    bad_sig = DOC_TRAILER_BODY.replace(b"d81f82fc", b"d81f82fd")
    expect("SignatureDoesNotMatch", decode_all, AwsChunkedDecoder.from_verified(v, headers), [bad_sig])
    bad_value = DOC_TRAILER_BODY.replace(b"sOO8/Q==", b"sOO8/Q0=")
    expect("SignatureDoesNotMatch", decode_all, AwsChunkedDecoder.from_verified(v, headers), [bad_value])
    no_sig = DOC_TRAILER_BODY.replace(
        b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n", b"")
    expect("MalformedTrailerError", decode_all, AwsChunkedDecoder.from_verified(v, headers), [no_sig])


@pytest.mark.parametrize("cut", [0, 10, 90, 5000, 65620, 65625, 66700, 66820, 66822])
def test_doc_example_truncated(cut):
    v, headers = _doc_verified(DOC_SIGNED)
    decoder = AwsChunkedDecoder.from_verified(v, headers)
    for piece in _pieces(DOC_SIGNED_BODY[:cut], cut):
        decoder.feed(piece)
    assert not decoder.done
    assert expect("IncompleteBody", decoder.finish).status == 400


def test_limits_oversize_chunk_and_line():
    v, headers = _doc_verified(DOC_SIGNED)
    small = AwsChunkedDecoder.from_verified(v, headers, max_chunk_size=64 * 1024 - 1)
    # refused on the size line alone, before any of the chunk's data is buffered
    expect("InvalidRequest", small.feed, DOC_SIGNED_BODY[:90])
    long_line = b"1" * 5000
    expect("InvalidRequest", AwsChunkedDecoder.from_verified(v, headers).feed, long_line)
    huge = b"ffffffffffffffff;chunk-signature=" + b"0" * 64 + b"\r\n"
    expect("InvalidRequest", AwsChunkedDecoder.from_verified(v, headers).feed, huge)
    too_many_digits = b"00000000000000001;chunk-signature=" + b"0" * 64 + b"\r\n"
    expect("InvalidRequest", AwsChunkedDecoder.from_verified(v, headers).feed, too_many_digits)


# ---------------------------------------------------------------------------------------------------
# aws-chunked built from the documented algorithm, seeded by botocore-signed requests


def _hmac_hex(key: bytes, msg: str) -> str:
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


def encode_signed(data: bytes, sizes, key: bytes, date: str, scope: str, seed: str,
                  trailers: list[tuple[str, str]] | None = None) -> bytes:
    """The test's own encoder, written from the AWS documentation (independent of the decoder)."""
    empty = hashlib.sha256(b"").hexdigest()
    out, prev, pos = bytearray(), seed, 0
    chunks = []
    for size in sizes:
        chunks.append(data[pos:pos + size])
        pos += size
    assert pos == len(data)
    for chunk in [*chunks, b""]:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", date, scope, prev, empty,
                         hashlib.sha256(chunk).hexdigest()])
        prev = _hmac_hex(key, sts)
        out += f"{len(chunk):x};chunk-signature={prev}\r\n".encode() + chunk
        if chunk:
            out += b"\r\n"
    if trailers is None:
        return bytes(out + b"\r\n")
    canonical = "".join(f"{n}:{v}\n" for n, v in trailers)
    sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", date, scope, prev,
                     hashlib.sha256(canonical.encode()).hexdigest()])
    for n, v in trailers:
        out += f"{n}:{v}\r\n".encode()
    out += f"x-amz-trailer-signature:{_hmac_hex(key, sts)}\r\n\r\n".encode()
    return bytes(out)


class _StreamingSigner(S3SigV4Auth):
    """botocore's S3 signer with the x-amz-content-sha256 of a chunk-signed upload."""

    content_sha256 = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

    def payload(self, request):
        return self.content_sha256


class _TrailerSigner(_StreamingSigner):
    content_sha256 = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"


def _signed_stream(data: bytes, sizes, trailer_alg: str | None = None, checksum_value=None):
    headers = {"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": str(len(data))}
    if trailer_alg:
        headers["X-Amz-Trailer"] = f"x-amz-checksum-{trailer_alg}"
    req, _ = sign("PUT", "/bucket/stream%20key", headers=headers,
                  signer=_TrailerSigner if trailer_alg else _StreamingSigner)
    v = verify(req, lookup, REGION)
    trailers = None
    if trailer_alg:
        trailers = [(f"x-amz-checksum-{trailer_alg}", checksum_value or checksum_of(trailer_alg, data))]
    body = encode_signed(data, sizes, v.signing_key, v.amz_date, v.scope, v.signature, trailers)
    return v, req, body


def test_botocore_seeded_signed_stream_random_chunks():
    rng = random.Random(5)
    data = rng.randbytes(150_000)
    sizes = [8192, 65536, 1, 50000]
    sizes.append(len(data) - sum(sizes))
    v, req, body = _signed_stream(data, sizes)
    assert v.payload_mode == PAYLOAD_STREAMING
    decoder = AwsChunkedDecoder.from_verified(v, req.headers)
    assert decode_all(decoder, _pieces(body, 3, most=3000)) == data


def test_reordered_or_dropped_chunks():
    data = b"A" * 1000 + b"B" * 1000 + b"C" * 1000
    v, req, body = _signed_stream(data, [1000, 1000, 1000])
    frames = body.split(b"\r\n")  # size line, data, size line, data, ..., final line, "", ""
    chunk = [frames[i] + b"\r\n" + frames[i + 1] + b"\r\n" for i in (0, 2, 4)]
    tail = b"\r\n".join(frames[6:])
    assert b"".join(chunk) + tail == body
    swapped = chunk[0] + chunk[2] + chunk[1] + tail
    dropped = chunk[0] + chunk[2] + tail
    for bad in (swapped, dropped):
        expect("SignatureDoesNotMatch", decode_all,
               AwsChunkedDecoder(PAYLOAD_STREAMING, signing_key=v.signing_key, amz_date=v.amz_date,
                                 scope=v.scope, seed_signature=v.signature), [bad])


def test_min_chunk_size():
    data = b"m" * 20000
    v, req, body = _signed_stream(data, [8192, 8192, 3616])
    ok = AwsChunkedDecoder.from_verified(v, req.headers, min_chunk_size=8192)
    assert decode_all(ok, [body]) == data
    v, req, body = _signed_stream(data, [8192, 100, 11708])
    small = AwsChunkedDecoder.from_verified(v, req.headers, min_chunk_size=8192)
    assert expect("InvalidChunkSizeError", decode_all, small, [body]).status == 403


def test_signed_stream_byte_at_a_time():
    data = b"0123456789" * 30
    v, req, body = _signed_stream(data, [100, 100, 100], trailer_alg="crc32")
    decoder = AwsChunkedDecoder.from_verified(v, req.headers)
    out = b"".join(b for i in range(len(body)) for b in decoder.feed(body[i:i + 1]))
    decoder.finish()
    assert out == data and decoder.checksum.algorithm == "crc32"


@pytest.mark.parametrize("alg", ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"])
def test_signed_stream_with_trailer_checksums(alg):
    data = random.Random(alg).randbytes(20_000)
    v, req, body = _signed_stream(data, [16384, 3616], trailer_alg=alg)
    assert v.payload_mode == PAYLOAD_STREAMING_TRAILER
    decoder = AwsChunkedDecoder.from_verified(v, req.headers)
    assert decode_all(decoder, [body]) == data
    assert decoder.checksum.value == checksum_of(alg, data)
    # a correctly signed trailer whose checksum is not the data's
    wrong = checksum_of(alg, data + b"x")
    v, req, body = _signed_stream(data, [20_000], trailer_alg=alg, checksum_value=wrong)
    expect("BadDigest", decode_all, AwsChunkedDecoder.from_verified(v, req.headers), [body])


def test_decoded_length_and_trailing_garbage():
    data = b"x" * 1000
    v, req, body = _signed_stream(data, [1000])
    expect("InvalidArgument", AwsChunkedDecoder.from_verified, v,
           [*req.headers, ("x-amz-decoded-content-length", "1000")])  # given twice
    for declared, code in (("1001", "IncompleteBody"), ("999", "InvalidRequest")):
        headers = [(k, declared if k.lower() == "x-amz-decoded-content-length" else val)
                   for k, val in req.headers]
        expect(code, decode_all, AwsChunkedDecoder.from_verified(v, headers), [body])
    expect("InvalidRequest", decode_all, AwsChunkedDecoder.from_verified(v, req.headers),
           [body + b"extra"])
    bad_crlf = body.replace(b"x" * 1000 + b"\r\n", b"x" * 1000 + b"\n\n")
    expect("InvalidRequest", decode_all, AwsChunkedDecoder.from_verified(v, req.headers), [bad_crlf])
    expect("InvalidArgument", AwsChunkedDecoder.from_verified, v,
           [("x-amz-decoded-content-length", "-5")])


# ---------------------------------------------------------------------------------------------------
# STREAMING-UNSIGNED-PAYLOAD-TRAILER built by botocore's own AwsChunkedWrapper


def _unsigned_trailer(data: bytes, alg: str, chunk_size: int = 1024 * 1024):
    import io

    name = f"x-amz-checksum-{alg}"
    cls = _Crc32cForBotocore if alg == "crc32c" else httpchecksum._CHECKSUM_CLS[alg]
    wrapper = httpchecksum.AwsChunkedWrapper(io.BytesIO(data), checksum_cls=cls, checksum_name=name,
                                             chunk_size=chunk_size)
    body = wrapper.read()

    class Signer(S3SigV4Auth):
        def payload(self, request):
            return "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    req, _ = sign("PUT", "/bucket/k", headers={
        "Content-Encoding": "aws-chunked", "X-Amz-Trailer": name,
        "X-Amz-Decoded-Content-Length": str(len(data)), "x-amz-sdk-checksum-algorithm": alg.upper()},
        signer=Signer)
    return verify(req, lookup, REGION), req, body


@pytest.mark.parametrize("alg", ["crc32", "crc32c", "sha256", "sha1"])
def test_unsigned_trailer_wrapper(alg):
    data = random.Random(alg).randbytes(300_000)
    v, req, body = _unsigned_trailer(data, alg, chunk_size=100_000)
    assert v.payload_mode == PAYLOAD_STREAMING_UNSIGNED_TRAILER
    decoder = AwsChunkedDecoder.from_verified(v, req.headers)
    assert decode_all(decoder, _pieces(body, 11, most=20_000)) == data
    assert decoder.checksum.value == checksum_of(alg, data)
    tampered = bytearray(body)
    tampered[500] ^= 1
    expect("BadDigest", decode_all, AwsChunkedDecoder.from_verified(v, req.headers), [bytes(tampered)])


def test_unsigned_trailer_framing_errors():
    v, req, body = _unsigned_trailer(b"hello world", "crc32")
    assert body == b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
    cases = {
        "MalformedTrailerError": [body.replace(b"x-amz-checksum-crc32:", b"x-amz-meta-other:"),
                                  body.replace(b"\r\n\r\n", b"\r\nx-amz-trailer-signature:00\r\n\r\n"),
                                  body.replace(b"crc32:DUoRhQ==", b"crc32 DUoRhQ==")],
        "InvalidRequest": [body.replace(b"b\r\n", b"zz\r\n", 1),
                           body.replace(b"b\r\n", b"b;chunk-signature=" + b"0" * 64 + b"\r\n", 1)],
        "IncompleteBody": [body[:-2], body[:-4], body[:5]],
    }
    for code, bodies in cases.items():
        for bad in bodies:
            expect(code, decode_all, AwsChunkedDecoder.from_verified(v, req.headers), [bad])
    # Tolerated: an extra CRLF after the empty final chunk, before the trailers.
    extra = body.replace(b"0\r\n", b"0\r\n\r\n")
    decoder = AwsChunkedDecoder.from_verified(v, req.headers)
    assert decode_all(decoder, [extra]) == b"hello world" and decoder.checksum.value == "DUoRhQ=="


def test_strip_aws_chunked():
    assert strip_aws_chunked("aws-chunked") is None
    assert strip_aws_chunked("gzip,aws-chunked") == "gzip"
    assert strip_aws_chunked("aws-chunked, br") == "br"
    assert strip_aws_chunked(None) is None


# ---------------------------------------------------------------------------------------------------
# Checksums


def test_checksum_check_values():
    # The catalogue check values (CRC of "123456789"); CRC64NVME's from awscrt's implementation.
    assert Checksum("crc32").digest() == b"\0\0\0\0"
    for alg, value in (("crc32", 0xCBF43926), ("crc32c", 0xE3069283),
                       ("crc64nvme", 0xAE8B14860A799888)):
        c = Checksum(alg)
        c.update(b"1234")
        c.update(memoryview(b"56789"))
        assert int.from_bytes(c.digest(), "big") == value, alg
    assert checksum_of("crc64nvme", bytes(32)) == base64.b64encode(
        (0xCF3473434D4ECF3B).to_bytes(8, "big")).decode()
    assert checksum_of("crc32c", b"a" * 66560) == "sOO8/Q=="
    assert checksum_of("crc32", b"hello world") == "DUoRhQ=="
    data = random.Random(1).randbytes(3000)
    # the pure-Python fallbacks agree with the implementation in use (google-crc32c / awscrt)
    assert checksums._crc32c_python(checksums._crc32c_python(0, data[:100]), data[100:]) == \
        int.from_bytes(_crc(data, "crc32c"), "big")
    assert checksums._crc64nvme_python(0, data) == int.from_bytes(_crc(data, "crc64nvme"), "big")


def _crc(data: bytes, alg: str) -> bytes:
    c = Checksum(alg)
    c.update(data)
    return c.digest()


def test_request_checksum_headers():
    data = b"some object data"
    crc = checksum_of("crc32", data)
    rc = RequestChecksum.from_headers({"x-amz-checksum-crc32": crc, "x-amz-sdk-checksum-algorithm": "CRC32"})
    rc.update(data)
    assert (rc.finish().algorithm, rc.finish().value) == ("crc32", crc)
    assert RequestChecksum.from_headers({}).finish() is None
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    rc = RequestChecksum.from_headers({"Content-MD5": md5})
    rc.update(data)
    assert rc.finish() is None
    rc = RequestChecksum.from_headers({"Content-MD5": md5})
    rc.update(data + b"!")
    expect("BadDigest", rc.finish)
    expect("InvalidDigest", RequestChecksum.from_headers, {"Content-MD5": "not base64!"})
    expect("InvalidRequest", RequestChecksum.from_headers,
           {"x-amz-checksum-crc32": crc, "x-amz-checksum-sha256": checksum_of("sha256", data)})
    expect("BadDigest", RequestChecksum.from_headers, {"x-amz-checksum-crc32": "AAAA"})  # 3 bytes: no CRC32 (s3-tests)
    expect("InvalidRequest", RequestChecksum.from_headers,
           {"x-amz-checksum-crc32": crc, "x-amz-sdk-checksum-algorithm": "SHA256"})
    expect("InvalidRequest", RequestChecksum.from_headers, {"x-amz-sdk-checksum-algorithm": "CRC32"})
    expect("InvalidRequest", RequestChecksum.from_headers, {"x-amz-checksum-xxhash64": "AAAAAAAAAAA="})
    expect("InvalidRequest", RequestChecksum.from_headers,
           {"x-amz-checksum-crc32": crc, "x-amz-trailer": "x-amz-checksum-crc32c"})
    # not checksum values
    assert RequestChecksum.from_headers({"x-amz-checksum-algorithm": "CRC32",
                                         "x-amz-checksum-type": "FULL_OBJECT"}).algorithm is None
    trailer = RequestChecksum.from_headers({"x-amz-trailer": "x-amz-checksum-sha256"})
    assert trailer.in_trailer and trailer.trailer_name == "x-amz-checksum-sha256"
    trailer.update(data)
    expect("MalformedTrailerError", trailer.finish, {})


# ---------------------------------------------------------------------------------------------------
# botocore with awscrt installed (``boto3[crt]``) signs with the CRT's C signer and has CRC32C and
# CRC64NVME; these run only where awscrt is importable.


def test_crt_signers_special_keys():
    pytest.importorskip("awscrt")
    from botocore.crt.auth import CrtS3SigV4Auth, CrtS3SigV4QueryAuth

    for key in SPECIAL_KEYS:
        path = "/bucket/" + quote(key, safe="/~")
        query = "prefix=" + quote(key, safe="-_.~") + "&uploads"
        req, _ = sign("PUT", path, query, headers={"x-amz-meta-a": " b  c "}, body=b"crt",
                      signer=CrtS3SigV4Auth)
        verify(req, lookup, REGION)
        expect("SignatureDoesNotMatch", verify, replace_header(req, "x-amz-meta-a", "b"), lookup,
               REGION)
        url = ENDPOINT + path + "?" + query
        r = AWSRequest(method="GET", url=url, headers={})
        CrtS3SigV4QueryAuth(Credentials(AK, SK), "s3", REGION, expires=60).add_auth(r)
        prepared = r.prepare()
        verify(as_request("GET", prepared.url, []), lookup, REGION)


@pytest.mark.parametrize("alg", ["CRC32C", "CRC64NVME"])
def test_botocore_client_crt_checksum_trailers(alg):
    from botocore.compat import HAS_CRT

    if not HAS_CRT:
        pytest.skip("botocore without awscrt has no CRC32C/CRC64NVME")
    client = CapturingClient("https://127.0.0.1:9000")
    data = random.Random(alg).randbytes(70_000)
    client.client.put_object(Bucket="b", Key="crt key+=", Body=data, ChecksumAlgorithm=alg)
    req, body = client.last()
    v = verify(req, lookup, REGION)
    payload, result = read_verified_body(v, req, body)
    assert payload == data and result.algorithm == alg.lower()
    assert result.value == checksum_of(alg.lower(), data)
