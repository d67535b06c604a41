"""What an S3 object keeps besides its bytes, with boto3 against a real cluster: the standard headers
(Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires) per version, with
GetObject's response-* overrides; the x-amz-checksum-* of a PutObject (CRC32, CRC32C, SHA1, SHA256),
returned only with ``ChecksumMode=ENABLED`` and never for a range; both through CopyObject (COPY and
REPLACE); a multipart upload's COMPOSITE CRC32 and a wrong part checksum; boto3's managed transfer;
and a file written with the native API, which has none of them."""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import struct
import zlib
from datetime import datetime, timezone

import pytest
from boto3.s3.transfer import TransferConfig

from tests.utils.s3 import expect_error, s3_client
from user_app.client.client import Client

MiB = 1024 * 1024
HEADERS = {"CacheControl": "max-age=3600, must-revalidate", "ContentDisposition": 'attachment; filename="r.txt"',
           "ContentEncoding": "gzip", "ContentLanguage": "de-CH"}
EXPIRES, EXPIRES_STRING = datetime(2026, 10, 21, 7, 28, tzinfo=timezone.utc), "Wed, 21 Oct 2026 07:28:00 GMT"
STORED = {**HEADERS, "ExpiresString": EXPIRES_STRING}
NONE = dict.fromkeys(STORED)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def checksum(algorithm: str, data: bytes) -> str:
    if algorithm == "CRC32":
        return b64(struct.pack(">I", zlib.crc32(data)))
    if algorithm == "CRC32C":
        from awscrt.checksums import crc32c
        return b64(struct.pack(">I", crc32c(data)))
    return b64(hashlib.new(algorithm.lower(), data).digest())


def composite_crc32(parts: list[bytes]) -> str:
    """S3's COMPOSITE checksum: the CRC32 of the parts' raw CRC32s, then ``-<number of parts>``."""
    raw = b"".join(struct.pack(">I", zlib.crc32(p)) for p in parts)
    return checksum("CRC32", raw) + f"-{len(parts)}"


def sums(response: dict) -> dict:
    return {k: v for k, v in response.items() if k.startswith("Checksum")}


def standard(response: dict) -> dict:
    return {k: response.get(k) for k in STORED}


def put_with_headers(s3, bucket: str, key: str, data: bytes, **kw) -> dict:
    return s3.put_object(Bucket=bucket, Key=key, Body=data, Expires=EXPIRES, **HEADERS, **kw)


# ---------------------------------------------------------------- standard headers


def test_standard_headers_are_kept_on_get_and_head(s3, bucket):
    data = gzip.compress(b"report " * 500)
    put_with_headers(s3, bucket, "r.txt.gz", data)
    got = s3.get_object(Bucket=bucket, Key="r.txt.gz")
    assert got["Body"].read() == data  # stored as sent: Content-Encoding is a label, not decoded
    assert standard(got) == STORED
    assert got["Expires"] == EXPIRES
    assert standard(s3.head_object(Bucket=bucket, Key="r.txt.gz")) == STORED


def test_response_overrides_win_over_stored_headers(s3, bucket):
    put_with_headers(s3, bucket, "o", b"x")
    got = s3.get_object(Bucket=bucket, Key="o", ResponseCacheControl="no-store", ResponseContentLanguage="fr",
                        ResponseContentDisposition="inline", ResponseContentEncoding="identity",
                        ResponseExpires=datetime(2032, 1, 1, tzinfo=timezone.utc))
    assert standard(got) == {"CacheControl": "no-store", "ContentDisposition": "inline", "ContentLanguage": "fr",
                             "ContentEncoding": "identity", "ExpiresString": "Thu, 01 Jan 2032 00:00:00 GMT"}


def test_each_version_keeps_its_own_headers(s3, bucket):
    first = put_with_headers(s3, bucket, "v", b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="v", Body=b"two")
    assert standard(s3.get_object(Bucket=bucket, Key="v")) == NONE
    assert standard(s3.head_object(Bucket=bucket, Key="v")) == NONE
    old = s3.get_object(Bucket=bucket, Key="v", VersionId=first)
    assert old["Body"].read() == b"one" and standard(old) == STORED
    assert standard(s3.head_object(Bucket=bucket, Key="v", VersionId=first)) == STORED


# ---------------------------------------------------------------- checksums


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_put_checksum_is_returned_with_checksum_mode(s3, bucket, algorithm):
    if algorithm == "CRC32C":
        pytest.importorskip("awscrt", reason="botocore computes CRC32C only with awscrt")
    data, field = os.urandom(3000), f"Checksum{algorithm}"
    expected = {field: checksum(algorithm, data), "ChecksumType": "FULL_OBJECT"}
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm=algorithm)
    assert put[field] == expected[field]
    assert sums(s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")) == expected
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == data  # botocore checks the body against the returned CRC/SHA
    assert sums(got) == expected


def test_explicit_crc32_value_is_stored(s3, bucket):
    data = b"explicit" * 99
    value = checksum("CRC32", data)
    assert s3.put_object(Bucket=bucket, Key="e", Body=data, ChecksumCRC32=value)["ChecksumCRC32"] == value
    head = s3.head_object(Bucket=bucket, Key="e", ChecksumMode="ENABLED")
    assert sums(head) == {"ChecksumCRC32": value, "ChecksumType": "FULL_OBJECT"}


def test_no_checksum_fields_without_checksum_mode(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"quiet", ChecksumAlgorithm="SHA256")
    assert "ChecksumSHA256" in s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert sums(s3.head_object(Bucket=bucket, Key="k")) == {}
    # botocore's default (response_checksum_validation="when_supported") adds ChecksumMode=ENABLED to every
    # GetObject by itself; "when_required" leaves it off
    bare = s3_client(cluster.s3_url(), response_checksum_validation="when_required")
    got = bare.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"quiet" and sums(got) == {}


def test_ranged_get_has_no_full_object_checksum(s3, bucket):
    data = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="r", Body=data, ChecksumAlgorithm="CRC32")
    part = s3.get_object(Bucket=bucket, Key="r", Range="bytes=0-3", ChecksumMode="ENABLED")
    assert part["Body"].read() == data[:4]
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert [k for k in sums(part) if k != "ChecksumType"] == []


# ---------------------------------------------------------------- copies


def test_copy_keeps_standard_headers_and_checksum(s3, bucket):
    data = os.urandom(2000)
    put_with_headers(s3, bucket, "src", data, ChecksumAlgorithm="SHA256")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert standard(head) == STORED
    assert sums(head) == {"ChecksumSHA256": checksum("SHA256", data), "ChecksumType": "FULL_OBJECT"}


def test_copy_with_replace_takes_new_headers_and_keeps_checksum(s3, bucket):
    data = os.urandom(2000)
    put_with_headers(s3, bucket, "src", data, ChecksumAlgorithm="SHA256")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", ContentDisposition="inline", CacheControl="no-cache")
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert standard(head) == {**NONE, "ContentDisposition": "inline", "CacheControl": "no-cache"}
    assert sums(head) == {"ChecksumSHA256": checksum("SHA256", data), "ChecksumType": "FULL_OBJECT"}
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == data


# ---------------------------------------------------------------- multipart


def upload_parts(s3, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[dict]]:
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32", CacheControl="private",
                                     ContentDisposition='attachment; filename="big.bin"')["UploadId"]
    answers = [s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=p, ChecksumAlgorithm="CRC32")
               for n, p in enumerate(parts, 1)]
    assert [a["ChecksumCRC32"] for a in answers] == [checksum("CRC32", p) for p in parts]
    return uid, [{"PartNumber": n, "ETag": a["ETag"], "ChecksumCRC32": a["ChecksumCRC32"]}
                 for n, a in enumerate(answers, 1)]


def test_multipart_upload_has_a_composite_crc32_and_keeps_headers(s3, bucket):
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(777)]
    uid, done_parts = upload_parts(s3, bucket, "mp", parts)
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": done_parts})
    assert done["ChecksumCRC32"] == composite_crc32(parts)
    head = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert sums(head) == {"ChecksumCRC32": composite_crc32(parts), "ChecksumType": "COMPOSITE"}
    assert head["CacheControl"] == "private" and head["ContentDisposition"] == 'attachment; filename="big.bin"'
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)


def test_complete_with_a_wrong_part_checksum_is_refused_and_can_be_retried(s3, bucket):
    parts = [os.urandom(5 * MiB), os.urandom(100)]
    uid, done_parts = upload_parts(s3, bucket, "mp", parts)
    wrong = checksum("CRC32", b"not the part")
    assert wrong != done_parts[1]["ChecksumCRC32"]
    bad = [done_parts[0], {**done_parts[1], "ChecksumCRC32": wrong}]
    expect_error("InvalidPart", 400, s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=uid,
                 MultipartUpload={"Parts": bad})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": done_parts})
    assert done["ChecksumCRC32"] == composite_crc32(parts)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"".join(parts)


# ---------------------------------------------------------------- managed transfer and the native API


def test_upload_file_multipart_and_download_file(s3, bucket, tmp_path):
    data = os.urandom(11 * MiB)
    (tmp_path / "up.bin").write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(str(tmp_path / "up.bin"), bucket, "big.bin", Config=config)
    s3.download_file(bucket, "big.bin", str(tmp_path / "down.bin"), Config=config)
    assert (tmp_path / "down.bin").read_bytes() == data
    head = s3.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"].endswith("-3")
    assert head["ChecksumCRC32"] == composite_crc32([data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)])


def test_upload_file_small_and_download_file(s3, bucket, tmp_path):
    data = os.urandom(4321)
    (tmp_path / "up.bin").write_bytes(data)
    s3.upload_file(str(tmp_path / "up.bin"), bucket, "small.bin")
    s3.download_file(bucket, "small.bin", str(tmp_path / "down.bin"))  # botocore checks the stored CRC32
    assert (tmp_path / "down.bin").read_bytes() == data
    head = s3.head_object(Bucket=bucket, Key="small.bin", ChecksumMode="ENABLED")
    assert sums(head) == {"ChecksumCRC32": checksum("CRC32", data), "ChecksumType": "FULL_OBJECT"}


def test_native_file_has_no_checksum_or_standard_headers(cluster, s3, bucket):
    with Client(cluster.url) as native:
        native.put(f"{bucket}/native.txt", b"written natively")
    head = s3.head_object(Bucket=bucket, Key="native.txt", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(b"written natively")
    assert sums(head) == {} and standard(head) == NONE
    assert s3.get_object(Bucket=bucket, Key="native.txt")["Body"].read() == b"written natively"


def test_create_multipart_upload_answers_its_checksum_algorithm_and_type(s3, bucket):
    crc = s3.create_multipart_upload(Bucket=bucket, Key="a", ChecksumAlgorithm="CRC32")
    assert (crc["ChecksumAlgorithm"], crc.get("ChecksumType")) == ("CRC32", "COMPOSITE")
    full = s3.create_multipart_upload(Bucket=bucket, Key="b", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    assert (full["ChecksumAlgorithm"], full.get("ChecksumType")) == ("CRC32", "FULL_OBJECT")
    plain = s3.create_multipart_upload(Bucket=bucket, Key="c")
    assert "ChecksumAlgorithm" not in plain
    expect_error("InvalidRequest", 400, s3.create_multipart_upload, Bucket=bucket, Key="d",
                 ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT")  # SHA-256 has no full-object form


def test_full_object_crc32_multipart(s3, bucket):
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="f", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    done = []
    for number, data in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="f", UploadId=upload["UploadId"], PartNumber=number, Body=data,
                           ChecksumAlgorithm="CRC32")
        done.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="f", UploadId=upload["UploadId"], MultipartUpload={"Parts": done})
    head = s3.head_object(Bucket=bucket, Key="f", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == checksum("CRC32", b"".join(parts)) and head["ChecksumType"] == "FULL_OBJECT"


def test_a_malformed_checksum_value_is_bad_digest_and_stores_nothing(s3, bucket):
    expect_error("BadDigest", 400, s3.put_object, Bucket=bucket, Key="bad", Body=b"data", ChecksumSHA256="bad")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="bad")


def test_aws_chunked_is_not_kept_as_a_content_encoding():
    from user_app.s3.object_headers import standard_headers
    assert standard_headers({"content-encoding": "gzip, aws-chunked"}) == {"content-encoding": "gzip"}
    assert standard_headers({"content-encoding": "aws-chunked"}) == {}
