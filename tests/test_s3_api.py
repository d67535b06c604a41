"""The S3 API (``user_app/s3/``) with boto3 against a real cluster: buckets, objects, listings, copies,
conditional requests, checksums, presigned URLs, errors, and the one namespace it shares with the user API.

Every call crosses real processes on loopback: boto3 signs with SigV4 exactly as against AWS.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from urllib.parse import quote
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from shared.auth.aws_chunked import chunk_string_to_sign
from shared.auth.sigv4 import derive_signing_key, hmac_hex
from tests.utils.auth import ROOT_ACCESS_KEY, ROOT_SECRET_KEY
from tests.utils.s3 import REGION, expect_error, md5_etag, s3_client
from user_app.client.client import Client

# ---------------------------------------------------------------- buckets


def test_bucket_lifecycle(s3):
    name = f"life-{uuid.uuid4().hex[:10]}"
    expect_error("404", 404, s3.head_bucket, Bucket=name)  # HEAD errors have no body: the status is the code
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] in (None, "")
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
    s3.create_bucket(Bucket=name)  # us-east-1 lets the owner create it again
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    expect_error("BucketNotEmpty", 409, s3.delete_bucket, Bucket=name)
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    expect_error("NoSuchBucket", 404, s3.delete_bucket, Bucket=name)
    expect_error("NoSuchBucket", 404, s3.put_object, Bucket=name, Key="k", Body=b"x")
    expect_error("NoSuchBucket", 404, s3.list_objects_v2, Bucket=name)


@pytest.mark.parametrize("name", ["ab", "Upper", "a" * 64, "-dash", "dots..dots", "192.168.1.1", "under_score"])
def test_create_bucket_refuses_invalid_names(s3, name):
    expect_error("InvalidBucketName", 400, s3.create_bucket, Bucket=name)


def test_create_bucket_in_another_region_is_refused(s3):
    expect_error("IllegalLocationConstraintException", 400, s3.create_bucket, Bucket=f"r-{uuid.uuid4().hex[:8]}",
                 CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})


# ---------------------------------------------------------------- objects


def test_put_get_head_with_metadata(s3, bucket):
    data = b"hello s3 " * 1000
    put = s3.put_object(Bucket=bucket, Key="docs/report.txt", Body=data, ContentType="text/x-report",
                        Metadata={"Owner": "finance", "quarter": "q3"})
    assert put["ETag"] == md5_etag(data)
    got = s3.get_object(Bucket=bucket, Key="docs/report.txt")
    assert got["Body"].read() == data
    assert got["ETag"] == md5_etag(data)
    assert got["ContentType"] == "text/x-report"
    assert got["Metadata"] == {"owner": "finance", "quarter": "q3"}
    assert got["ContentLength"] == len(data)
    assert got["VersionId"] == put["VersionId"]
    head = s3.head_object(Bucket=bucket, Key="docs/report.txt")
    assert head["ContentLength"] == len(data) and head["ETag"] == md5_etag(data)
    assert head["Metadata"] == {"owner": "finance", "quarter": "q3"}


def test_versions_and_version_id(s3, bucket):
    v1 = s3.put_object(Bucket=bucket, Key="f", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="f", Body=b"two")["VersionId"]
    assert int(v2) == int(v1) + 1
    assert s3.get_object(Bucket=bucket, Key="f", VersionId=v1)["Body"].read() == b"one"
    assert s3.get_object(Bucket=bucket, Key="f")["Body"].read() == b"two"
    expect_error("NoSuchVersion", 404, s3.get_object, Bucket=bucket, Key="f", VersionId="999")
    expect_error("InvalidArgument", 400, s3.get_object, Bucket=bucket, Key="f", VersionId="abc")


def test_missing_key(s3, bucket):
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="nope")
    expect_error("404", 404, s3.head_object, Bucket=bucket, Key="nope")


def test_empty_object(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == md5_etag(b"")
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


def test_range_reads(s3, bucket):
    data = bytes(range(256)) * 40
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    part = s3.get_object(Bucket=bucket, Key="r", Range="bytes=100-1099")
    assert part["Body"].read() == data[100:1100]
    assert part["ContentRange"] == f"bytes 100-1099/{len(data)}"
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=-10")["Body"].read() == data[-10:]
    expect_error("InvalidRange", 416, s3.get_object, Bucket=bucket, Key="r", Range=f"bytes={len(data)}-")


def test_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o.bin", Body=b"x")
    got = s3.get_object(Bucket=bucket, Key="o.bin", ResponseContentType="text/plain",
                        ResponseContentDisposition='attachment; filename="x.txt"', ResponseCacheControl="no-cache")
    assert got["ContentType"] == "text/plain"
    assert got["ContentDisposition"] == 'attachment; filename="x.txt"'
    assert got["CacheControl"] == "no-cache"


def test_conditional_reads(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"cond")
    etag = put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"cond"
    expect_error("PreconditionFailed", 412, s3.get_object, Bucket=bucket, Key="c", IfMatch='"0000"')
    expect_error("304", 304, s3.get_object, Bucket=bucket, Key="c", IfNoneMatch=etag)
    future = datetime.now(timezone.utc) + timedelta(days=1)
    past = datetime.now(timezone.utc) - timedelta(days=1)
    expect_error("304", 304, s3.get_object, Bucket=bucket, Key="c", IfModifiedSince=future)
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"cond"
    expect_error("PreconditionFailed", 412, s3.get_object, Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=future)["Body"].read() == b"cond"


def test_conditional_writes(s3, bucket):
    first = s3.put_object(Bucket=bucket, Key="w", Body=b"1", IfNoneMatch="*")
    expect_error("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="w", Body=b"2", IfNoneMatch="*")
    expect_error("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="w", Body=b"2", IfMatch='"beef"')
    s3.put_object(Bucket=bucket, Key="w", Body=b"3", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="w")["Body"].read() == b"3"
    # If-Match on a key with no live version: NoSuchKey, as AWS answers (s3-tests' conditional writes)
    expect_error("NoSuchKey", 404, s3.put_object, Bucket=bucket, Key="new", Body=b"2", IfMatch="*")
    expect_error("NoSuchKey", 404, s3.put_object, Bucket=bucket, Key="new", Body=b"2", IfMatch='"beef"')
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="new")  # nothing was written


@pytest.mark.parametrize("key,code", [("a//b", "InvalidArgument"), ("/lead", "InvalidArgument"),
                                      ("x/../y", "InvalidArgument"), ("./x", "InvalidArgument"),
                                      ("ctl\x01char", "InvalidArgument"), ("k" * 1025, "KeyTooLongError")])
def test_keys_ringfs_cannot_hold(s3, bucket, key, code):
    expect_error(code, 400, s3.put_object, Bucket=bucket, Key=key, Body=b"x")


def test_folder_markers(s3, bucket):
    s3.put_object(Bucket=bucket, Key="photos/", Body=b"")
    listing = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listing["Contents"]] == ["photos/"]
    assert s3.head_object(Bucket=bucket, Key="photos/")["ContentLength"] == 0
    s3.put_object(Bucket=bucket, Key="photos/a.jpg", Body=b"jpg")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="photos/")
    assert [o["Key"] for o in listing["Contents"]] == ["photos/", "photos/a.jpg"]
    expect_error("InvalidArgument", 400, s3.put_object, Bucket=bucket, Key="full/", Body=b"data")
    s3.delete_object(Bucket=bucket, Key="photos/")  # the marker only: the file below stays
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["photos/a.jpg"]


def test_delete_goes_to_trash(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="gone.txt", Body=b"bye")
    assert s3.delete_object(Bucket=bucket, Key="gone.txt")["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="gone.txt")
    s3.delete_object(Bucket=bucket, Key="gone.txt")  # deleting what is not there is a 204, as in S3
    with Client(cluster.url) as native:
        assert f"{bucket}/gone.txt" in [e["path"] for e in native.trash()]
        native.undelete(f"{bucket}/gone.txt")
    assert s3.get_object(Bucket=bucket, Key="gone.txt")["Body"].read() == b"bye"


def test_delete_objects(s3, bucket):
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x")
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"d/{i}"} for i in range(3)]
                                                     + [{"Key": "a//b"}]})
    assert sorted(d["Key"] for d in answer["Deleted"]) == ["d/0", "d/1", "d/2"]
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("a//b", "InvalidArgument")]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/3"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["d/4"]


# ---------------------------------------------------------------- one namespace with the user API


def test_one_namespace_both_ways(cluster, s3, bucket):
    with Client(cluster.url) as native:
        native.put(f"{bucket}/native/file.bin", b"written natively")
        got = s3.get_object(Bucket=bucket, Key="native/file.bin")
        assert got["Body"].read() == b"written natively"
        assert got["ETag"] == md5_etag(b"written natively")  # the user API's writes record the MD5 too
        s3.put_object(Bucket=bucket, Key="from-s3/obj.txt", Body=b"written by boto3")
        assert native.get(f"{bucket}/from-s3/obj.txt") == b"written by boto3"
        assert native.stat(f"{bucket}/from-s3/obj.txt")["sha256"] == hashlib.sha256(b"written by boto3").hexdigest()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["from-s3/obj.txt", "native/file.bin"]


def test_a_folder_made_natively_is_a_bucket(cluster, s3):
    name = f"nat-{uuid.uuid4().hex[:10]}"
    with Client(cluster.url) as native:
        native.put(f"{name}/x.txt", b"x")
    s3.head_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# ---------------------------------------------------------------- listings


@pytest.fixture(scope="module")
def listed(s3):
    name = f"list-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    keys = ["a.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "ba.txt", "c d/e f.txt", "z/ü.txt"]
    for key in keys:
        s3.put_object(Bucket=name, Key=key, Body=key.encode())
    return name, keys


def test_list_v2_everything_in_byte_order(s3, listed):
    name, keys = listed
    got = s3.list_objects_v2(Bucket=name)
    assert [o["Key"] for o in got["Contents"]] == sorted(keys, key=lambda k: k.encode())
    assert got["KeyCount"] == len(keys) and not got["IsTruncated"]
    first = got["Contents"][0]
    assert first["Size"] == len(b"a.txt") and first["ETag"] == md5_etag(b"a.txt")


def test_list_v2_delimiter_and_prefix(s3, listed):
    name, _ = listed
    top = s3.list_objects_v2(Bucket=name, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a.txt", "ba.txt"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["b/", "c d/", "z/"]
    inside = s3.list_objects_v2(Bucket=name, Delimiter="/", Prefix="b/")
    assert [o["Key"] for o in inside["Contents"]] == ["b/1.txt", "b/2.txt"]
    assert [p["Prefix"] for p in inside["CommonPrefixes"]] == ["b/c/"]
    partial = s3.list_objects_v2(Bucket=name, Prefix="b")  # a string prefix, not a folder
    assert [o["Key"] for o in partial["Contents"]] == ["b/1.txt", "b/2.txt", "b/c/3.txt", "ba.txt"]


def test_list_v2_pages_with_paginator(s3, listed):
    name, keys = listed
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=name, PaginationConfig={"PageSize": 2}))
    assert len(pages) == 4
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(keys, key=lambda k: k.encode())
    with_prefixes = list(s3.get_paginator("list_objects_v2").paginate(
        Bucket=name, Delimiter="/", PaginationConfig={"PageSize": 1}))
    seen = [o["Key"] for p in with_prefixes for o in p.get("Contents", [])]
    seen += [c["Prefix"] for p in with_prefixes for c in p.get("CommonPrefixes", [])]
    assert sorted(seen) == ["a.txt", "b/", "ba.txt", "c d/", "z/"]


def test_list_v2_start_after_and_encoding(s3, listed):
    name, _ = listed
    after = s3.list_objects_v2(Bucket=name, StartAfter="b/2.txt")
    assert [o["Key"] for o in after["Contents"]][0] == "b/c/3.txt"
    raw = s3.list_objects_v2(Bucket=name, Prefix="c d/", EncodingType="url")
    assert raw["Contents"][0]["Key"] == "c%20d/e%20f.txt"  # asked for by the caller: boto3 leaves it encoded
    assert raw["Prefix"] == "c%20d/"
    zero = s3.list_objects_v2(Bucket=name, MaxKeys=0)
    assert zero["KeyCount"] == 0 and not zero["IsTruncated"]


def test_list_v1_marker(s3, listed):
    name, keys = listed
    pages = list(s3.get_paginator("list_objects").paginate(Bucket=name, PaginationConfig={"PageSize": 3}))
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(keys, key=lambda k: k.encode())
    v1 = s3.list_objects(Bucket=name, Marker="b/c/3.txt", Delimiter="/")
    assert [o["Key"] for o in v1.get("Contents", [])] == ["ba.txt"]


# ---------------------------------------------------------------- copies


def test_copy_object_shares_chunks_and_metadata(cluster, s3, bucket):
    data = b"copy me " * 5000
    s3.put_object(Bucket=bucket, Key="src", Body=data, ContentType="text/x-src", Metadata={"k": "v"})
    other = f"c-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=other)
    answer = s3.copy_object(Bucket=other, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert answer["CopyObjectResult"]["ETag"] == md5_etag(data)
    got = s3.get_object(Bucket=other, Key="dst")
    assert got["Body"].read() == data and got["ContentType"] == "text/x-src" and got["Metadata"] == {"k": "v"}
    with Client(cluster.url) as native:
        src_chunks = [c["hash"] for c in native.locations(f"{bucket}/src")["chunks"]]
        dst_chunks = [c["hash"] for c in native.locations(f"{other}/dst")["chunks"]]
    assert src_chunks == dst_chunks  # no data moved: the copy is the same chunks
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                   ContentType="text/plain", Metadata={"new": "1"})
    head = s3.head_object(Bucket=bucket, Key="replaced")
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"new": "1"}
    expect_error("InvalidRequest", 400, s3.copy_object, Bucket=bucket, Key="src", CopySource=f"{bucket}/src")
    expect_error("NoSuchKey", 404, s3.copy_object, Bucket=bucket, Key="x", CopySource=f"{bucket}/missing")


def test_copy_object_conditions_and_versions(s3, bucket):
    v1 = s3.put_object(Bucket=bucket, Key="s", Body=b"first")
    s3.put_object(Bucket=bucket, Key="s", Body=b"second")
    s3.copy_object(Bucket=bucket, Key="old", CopySource={"Bucket": bucket, "Key": "s", "VersionId": v1["VersionId"]})
    assert s3.get_object(Bucket=bucket, Key="old")["Body"].read() == b"first"
    expect_error("PreconditionFailed", 412, s3.copy_object, Bucket=bucket, Key="t", CopySource=f"{bucket}/s",
                 CopySourceIfMatch=v1["ETag"])


# ---------------------------------------------------------------- integrity


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_checksums_are_checked(s3, bucket, algorithm):
    if algorithm == "CRC32C":
        pytest.importorskip("awscrt", reason="botocore computes CRC32C only with awscrt")
    s3.put_object(Bucket=bucket, Key=f"sum-{algorithm}", Body=b"integrity" * 100, ChecksumAlgorithm=algorithm)
    assert s3.get_object(Bucket=bucket, Key=f"sum-{algorithm}")["Body"].read() == b"integrity" * 100


def test_wrong_checksum_or_md5_stores_nothing(s3, bucket):
    expect_error("BadDigest", 400, s3.put_object, Bucket=bucket, Key="bad", Body=b"data", ChecksumCRC32="AAAAAA==")
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    expect_error("BadDigest", 400, s3.put_object, Bucket=bucket, Key="bad", Body=b"data", ContentMD5=wrong_md5)
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="bad")


def _chunk_signed_put(url: str, bucket: str, key: str, data: bytes, chunk: int, tamper: bool = False):
    """A ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` PUT built by hand as the AWS documentation describes it
    (botocore does not send this form; the Java and Go SDKs do)."""
    now = datetime.now(timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{REGION}/s3/aws4_request"
    host = url.split("://", 1)[1]
    headers = {"host": host, "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "x-amz-date": amz_date,
               "x-amz-decoded-content-length": str(len(data)), "content-encoding": "aws-chunked"}
    signed = sorted(headers)
    canonical = "\n".join(["PUT", f"/{bucket}/{key}", "", *(f"{h}:{headers[h]}" for h in signed), "",
                           ";".join(signed), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = derive_signing_key(ROOT_SECRET_KEY, day, REGION)
    seed = previous = hmac_hex(signing_key, sts)
    body = bytearray()
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        signature = hmac_hex(signing_key, chunk_string_to_sign(amz_date, scope, previous,
                                                               hashlib.sha256(piece).hexdigest()))
        previous = signature
        if tamper and piece:
            piece = piece[:-1] + bytes([piece[-1] ^ 1])
        body += f"{len(piece):x};chunk-signature={signature}\r\n".encode() + piece + b"\r\n"
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ROOT_ACCESS_KEY}/{scope}, "
                                f"SignedHeaders={';'.join(signed)}, Signature={seed}")
    return httpx.put(f"{url}/{bucket}/{key}", content=bytes(body), headers=headers, timeout=30)


def test_chunk_signed_streaming_upload(cluster, s3, bucket):
    data = bytes(range(256)) * 300
    answer = _chunk_signed_put(cluster.s3_url(), bucket, "streamed", data, 8192)
    assert answer.status_code == 200, answer.text
    assert s3.get_object(Bucket=bucket, Key="streamed")["Body"].read() == data
    bad = _chunk_signed_put(cluster.s3_url(), bucket, "tampered", data, 8192, tamper=True)
    assert bad.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in bad.text
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="tampered")


# ---------------------------------------------------------------- presigned URLs and errors


def test_presigned_get_and_put(s3, bucket):
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre"}, ExpiresIn=300)
    assert httpx.put(put_url, content=b"presigned body").status_code == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre"}, ExpiresIn=300)
    answer = httpx.get(get_url)
    assert answer.status_code == 200 and answer.content == b"presigned body"
    tampered = get_url.replace("Key=pre", "Key=other") if "Key=" in get_url else get_url.replace("/pre?", "/prx?")
    assert httpx.get(tampered).status_code == 403


def test_error_document_format(cluster, bucket):
    answer = httpx.get(f"{cluster.s3_url()}/{bucket}/k")  # unsigned
    assert answer.status_code == 403
    for element in ("<Code>AccessDenied</Code>", "<Message>", "<Resource>", "<RequestId>"):
        assert element in answer.text
    assert answer.headers["x-amz-request-id"]


def test_wrong_keys(cluster, bucket):
    expect_error("SignatureDoesNotMatch", 403, s3_client(cluster.s3_url(), secret_key="wrong" * 8).list_objects_v2,
                 Bucket=bucket)
    expect_error("InvalidAccessKeyId", 403, s3_client(cluster.s3_url(), access_key="AKNOSUCHKEY000000000").list_buckets)


def test_unimplemented_operations_answer_501(s3, bucket):
    expect_error("NotImplemented", 501, s3.put_bucket_tagging, Bucket=bucket,
                 Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    expect_error("NotImplemented", 501, s3.get_bucket_acl, Bucket=bucket)


def test_user_api_port_still_serves_the_user_api(cluster):
    with Client(cluster.url) as native:
        native.put("plain/file.txt", b"plain")
        assert native.get("plain/file.txt") == b"plain"
    assert httpx.get(cluster.url + "/healthz").status_code == 200


def test_s3_time_is_recent(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"t")
    modified = s3.head_object(Bucket=bucket, Key="t")["LastModified"]
    assert abs(modified.timestamp() - time.time()) < 120


def test_virtual_host_style(cluster, s3, bucket):
    """``<bucket>.<S3_DOMAIN>`` names the bucket (a second user app with ``S3_DOMAIN``); the request is
    signed by botocore for that host and sent to 127.0.0.1 with it as ``Host``."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    s3.put_object(Bucket=bucket, Key="vhost/key.txt", Body=b"virtual host")
    app = cluster.add_user_app(env={"S3_DOMAIN": "s3.ringfs.test"})
    port = app.env["S3_PORT"]
    host = f"{bucket}.s3.ringfs.test:{port}"
    request = AWSRequest(method="GET", url=f"http://{host}/vhost/key.txt")
    S3SigV4Auth(Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY), "s3", REGION).add_auth(request)
    answer = httpx.get(f"http://127.0.0.1:{port}/vhost/key.txt", headers={**request.headers, "Host": host})
    assert answer.status_code == 200, answer.text
    assert answer.content == b"virtual host"


def test_both_ports_with_two_workers(cluster, bucket):
    """``WORKERS=2``: uvicorn's worker supervisor gets both sockets (shared/serve.py), and each worker
    answers on both ports."""
    app = cluster.add_user_app(env={"WORKERS": "2"})
    client = s3_client(f"http://127.0.0.1:{app.env['S3_PORT']}")
    for _ in range(6):  # several connections: the kernel spreads them over the workers
        assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
        assert httpx.get(app.url + "/healthz").status_code == 200


def test_non_ascii_metadata_is_signed_as_sent(s3, bucket):
    """botocore signs an x-amz-meta-* value's UTF-8 bytes: the canonical request must hold those bytes."""
    def set_unicode(params, **_):
        params["headers"]["x-amz-meta-note"] = "Grüße é"

    s3.meta.events.register("before-call.s3.PutObject", set_unicode)
    try:
        s3.put_object(Bucket=bucket, Key="unicode-meta", Body=b"x")
    finally:
        s3.meta.events.unregister("before-call.s3.PutObject", set_unicode)
    assert "note" in s3.head_object(Bucket=bucket, Key="unicode-meta")["Metadata"]


def test_cors_preflight_and_part_number(cluster, s3, bucket):
    url = f"{cluster.s3_url()}/{bucket}/k"
    assert httpx.options(url).status_code == 400
    preflight = httpx.options(url, headers={"Origin": "https://example.com", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 403 and "<Code>AccessForbidden</Code>" in preflight.text
    s3.put_object(Bucket=bucket, Key="k", Body=b"one part")
    assert s3.get_object(Bucket=bucket, Key="k", PartNumber=1)["Body"].read() == b"one part"
    expect_error("InvalidPart", 400, s3.get_object, Bucket=bucket, Key="k", PartNumber=2)


def test_list_buckets_pages(s3):
    names = sorted(f"pg-{uuid.uuid4().hex[:8]}-{i}" for i in range(3))
    for name in names:
        s3.create_bucket(Bucket=name)
    first = s3.list_buckets(MaxBuckets=2, Prefix="pg-")
    assert len(first["Buckets"]) == 2 and first["ContinuationToken"]
    rest = s3.list_buckets(MaxBuckets=1000, Prefix="pg-", ContinuationToken=first["ContinuationToken"])
    seen = [b["Name"] for b in first["Buckets"] + rest["Buckets"]]
    assert set(names) <= set(seen) and seen == sorted(seen)


def test_listing_parameters_with_control_characters(s3, listed):
    """No key holds a control character, so S3's answers follow without asking the leader to store one."""
    name, keys = listed
    assert s3.list_objects_v2(Bucket=name, Prefix="b\x01")["KeyCount"] == 0
    every = sorted(keys, key=lambda k: k.encode())
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name, Delimiter="\x0a", EncodingType="url")["Contents"]] \
        == [quote(k) for k in every]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name, StartAfter="b/\x01")["Contents"]] \
        == [k for k in every if k.encode() > b"b/\x01"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name, StartAfter="b\x7f")["Contents"]] \
        == [k for k in every if k.encode() > b"b\x7f"]


# ---------------------------------------------------------------- multipart


MiB = 1024 * 1024


def multipart_etag(parts: list[bytes]) -> str:
    return '"' + hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f'-{len(parts)}"'


def test_upload_file_and_download_file_multipart(cluster, s3, bucket, tmp_path):
    from boto3.s3.transfer import TransferConfig
    data = os.urandom(20 * MiB + 12345)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=4)
    s3.upload_file(str(src), bucket, "videos/big.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="videos/big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == multipart_etag([data[i:i + 8 * MiB] for i in range(0, len(data), 8 * MiB)])
    out = tmp_path / "down.bin"
    s3.download_file(bucket, "videos/big.bin", str(out), Config=config)  # ranged GETs in parallel
    assert out.read_bytes() == data
    with Client(cluster.url) as native:  # one object, whole, with its real SHA-256
        assert native.stat(f"{bucket}/videos/big.bin")["sha256"] == hashlib.sha256(data).hexdigest()
        assert native.get(f"{bucket}/videos/big.bin", byte_range=(8 * MiB - 10, 8 * MiB + 10)) \
            == data[8 * MiB - 10: 8 * MiB + 11]


def test_multipart_lifecycle_and_errors(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentType="video/mp4", Metadata={"a": "1"})
    uid = up["UploadId"]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [uid]
    one, two = os.urandom(5 * MiB), os.urandom(1000)
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"to be replaced")["ETag"]
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=one)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2, Body=two)["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [(1, e1, len(one)), (2, e2, len(two))]
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="mp")  # nothing visible before completion
    expect_error("InvalidPart", 400, s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=uid,
                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e2}]})
    expect_error("InvalidPartOrder", 400, s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=uid,
                 MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert done["ETag"] == multipart_etag([one, two])
    again = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})  # a retry after a lost answer
    assert (again["ETag"], again["VersionId"]) == (done["ETag"], done["VersionId"])
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == one + two and got["ContentType"] == "video/mp4" and got["Metadata"] == {"a": "1"}
    expect_error("NoSuchUpload", 404, s3.list_parts, Bucket=bucket, Key="mp", UploadId=uid)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    small = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    tags = [s3.upload_part(Bucket=bucket, Key="small", UploadId=small, PartNumber=n, Body=b"x" * 100)["ETag"]
            for n in (1, 2)]
    expect_error("EntityTooSmall", 400, s3.complete_multipart_upload, Bucket=bucket, Key="small", UploadId=small,
                 MultipartUpload={"Parts": [{"PartNumber": n, "ETag": t} for n, t in zip((1, 2), tags)]})
    s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=small)
    expect_error("NoSuchUpload", 404, s3.upload_part, Bucket=bucket, Key="small", UploadId=small, PartNumber=3,
                 Body=b"late")
    expect_error("NoSuchUpload", 404, s3.abort_multipart_upload, Bucket=bucket, Key="small", UploadId=small)


def test_multipart_odd_part_sizes_and_part_copy(s3, bucket):
    """Parts that are not whole multiples of the upload's chunk size are joined by a copy; UploadPartCopy
    takes a range of another object."""
    source = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="odd")["UploadId"]
    first = os.urandom(5 * MiB + 1)  # not a multiple of 64 KiB
    e1 = s3.upload_part(Bucket=bucket, Key="odd", UploadId=uid, PartNumber=1, Body=first)["ETag"]
    copied = s3.upload_part_copy(Bucket=bucket, Key="odd", UploadId=uid, PartNumber=2,
                                 CopySource={"Bucket": bucket, "Key": "source"}, CopySourceRange="bytes=100-5000")
    e2 = copied["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="odd", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    got = s3.get_object(Bucket=bucket, Key="odd")
    assert got["Body"].read() == first + source[100:5001]
    assert got["ETag"] == multipart_etag([first, source[100:5001]])


def test_sigv2_is_refused_with_the_reason(cluster, bucket):
    v2 = s3_client(cluster.s3_url(), signature_version="s3")  # SigV2, header and presigned
    expect_error("InvalidRequest", 400, v2.list_objects, Bucket=bucket)
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    answer = httpx.get(url)
    assert answer.status_code == 400 and "AWS4-HMAC-SHA256" in answer.text


def test_folder_marker_with_a_large_body_is_refused_before_it_is_read(cluster, bucket):
    """A marker holds no byte: its announced length is refused at once, nothing is buffered."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{cluster.s3_url()}/{bucket}/marker/"
    request = AWSRequest(method="PUT", url=url, data=b"", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY), "s3", REGION).add_auth(request)

    def body():  # 64 MiB it never has to read
        for _ in range(64):
            yield b"\0" * MiB

    answer = httpx.put(url, content=body(), headers={**request.headers, "Content-Length": str(64 * MiB)},
                       timeout=30)
    assert answer.status_code == 400 and "<Code>InvalidArgument</Code>" in answer.text
