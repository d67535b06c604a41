"""Object versions through the S3 API with boto3 against a real cluster: ListObjectVersions (versions and
delete markers, paging, prefixes), DeleteObject and DeleteObjects of a version id or a delete marker, and
how that meets the trash of the user API (``user_app/s3/versions.py``, ``user_app/s3/deletes.py``)."""

from __future__ import annotations

import uuid

from tests.utils.s3 import expect_error, md5_etag, s3_client
from user_app.client.client import Client


def history(s3, bucket: str, **params) -> list[tuple]:
    """Every entry of ListObjectVersions over all its pages (the paginator's), as sorted
    ``(kind, key, version id, is latest)`` tuples: botocore splits a page's versions from its delete
    markers, so their interleaving is not seen here."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, **params):
        out += [("V", v["Key"], v["VersionId"], v["IsLatest"]) for v in page.get("Versions", [])]
        out += [("D", d["Key"], d["VersionId"], d["IsLatest"]) for d in page.get("DeleteMarkers", [])]
    return sorted(out)


def entries(s3, bucket: str, **params) -> dict:
    return s3.list_object_versions(Bucket=bucket, **params)


def test_versions_and_delete_markers_are_listed_newest_first(s3, bucket):
    v1 = s3.put_object(Bucket=bucket, Key="f", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="f", Body=b"two")["VersionId"]
    gone = s3.delete_object(Bucket=bucket, Key="f")
    assert gone["DeleteMarker"] is True and gone["VersionId"].startswith("dm-")
    v3 = s3.put_object(Bucket=bucket, Key="f", Body=b"three")["VersionId"]
    answer = entries(s3, bucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in answer["Versions"]] == [(v3, True), (v2, False), (v1, False)]
    assert [(d["VersionId"], d["IsLatest"]) for d in answer["DeleteMarkers"]] == [(gone["VersionId"], False)]
    assert answer["Versions"][0]["ETag"] == md5_etag(b"three") and answer["Versions"][0]["Size"] == 5
    marker_time = answer["DeleteMarkers"][0]["LastModified"]
    assert answer["Versions"][1]["LastModified"] <= marker_time <= answer["Versions"][0]["LastModified"]
    # a delete with nothing written since makes the marker the latest: the key reads as gone
    s3.delete_object(Bucket=bucket, Key="f")
    latest = [d for d in entries(s3, bucket)["DeleteMarkers"] if d["IsLatest"]]
    assert len(latest) == 1 and not any(v["IsLatest"] for v in entries(s3, bucket)["Versions"])
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="f")


def test_removing_the_latest_delete_marker_brings_the_object_back(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"draft")
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"final")
    marker = s3.delete_object(Bucket=bucket, Key="doc.txt")["VersionId"]
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="doc.txt")
    expect_error("MethodNotAllowed", 405, s3.get_object, Bucket=bucket, Key="doc.txt", VersionId=marker)
    removed = s3.delete_object(Bucket=bucket, Key="doc.txt", VersionId=marker)
    assert removed["DeleteMarker"] is True and removed["VersionId"] == marker
    assert s3.get_object(Bucket=bucket, Key="doc.txt")["Body"].read() == b"final"
    assert "DeleteMarkers" not in entries(s3, bucket)
    assert len(entries(s3, bucket)["Versions"]) == 2
    with Client(cluster.url) as native:  # the same restore the user API's undelete does: the trash is empty
        assert f"{bucket}/doc.txt" not in [e["path"] for e in native.trash()]
    # removing it again, or a marker that never was, is no error (as in S3)
    s3.delete_object(Bucket=bucket, Key="doc.txt", VersionId=marker)
    s3.delete_object(Bucket=bucket, Key="doc.txt", VersionId="dm-12345.5")


def test_removing_an_older_delete_marker_keeps_the_latest(s3, bucket):
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"old")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")
    s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=old)["Body"].read() == b"old"  # readable again
    assert "DeleteMarkers" not in entries(s3, bucket)


def test_deleting_a_version_removes_it_for_good(cluster, s3, bucket):
    v1 = s3.put_object(Bucket=bucket, Key="f", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="f", Body=b"two")["VersionId"]
    answer = s3.delete_object(Bucket=bucket, Key="f", VersionId=v2)
    assert answer["VersionId"] == v2 and "DeleteMarker" not in answer
    assert s3.get_object(Bucket=bucket, Key="f")["Body"].read() == b"one"  # the older one is the latest now
    expect_error("NoSuchVersion", 404, s3.get_object, Bucket=bucket, Key="f", VersionId=v2)
    assert [(v["VersionId"], v["IsLatest"]) for v in entries(s3, bucket)["Versions"]] == [(v1, True)]
    s3.delete_object(Bucket=bucket, Key="f", VersionId=v1)
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="f")
    assert "Versions" not in entries(s3, bucket)
    with Client(cluster.url) as native:  # for good: not in the trash either
        assert f"{bucket}/f" not in [e["path"] for e in native.trash()]
    s3.delete_object(Bucket=bucket, Key="f", VersionId=v1)  # already gone: no error


def test_deleting_a_version_in_the_trash(s3, bucket):
    v1 = s3.put_object(Bucket=bucket, Key="t", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="t", Body=b"2")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key="t")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="t", VersionId=v2)
    assert [v["VersionId"] for v in entries(s3, bucket)["Versions"]] == [v1]
    s3.delete_object(Bucket=bucket, Key="t", VersionId=marker)  # what the marker still hid comes back
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == b"1"


def test_paging_prefixes_and_markers(s3, bucket):
    for key in ("a", "b/1", "b/2", "c"):
        for i in range(3):
            s3.put_object(Bucket=bucket, Key=key, Body=f"{key}{i}".encode())
    s3.delete_object(Bucket=bucket, Key="c")
    s3.put_object(Bucket=bucket, Key="folder/", Body=b"")
    whole = history(s3, bucket)
    assert len(whole) == 4 * 3 + 1 + 1
    assert [e for e in whole if e[1] == "folder/"] == [("V", "folder/", "null", True)]
    for size in (1, 2, 3, 5):
        assert history(s3, bucket, PaginationConfig={"PageSize": size}) == whole, size
    page = entries(s3, bucket, MaxKeys=4)
    assert page["IsTruncated"] is True and page["NextKeyMarker"] == "b/1"
    assert page["NextVersionIdMarker"] == page["Versions"][-1]["VersionId"]
    rest = entries(s3, bucket, KeyMarker="b/1", VersionIdMarker=page["NextVersionIdMarker"])
    assert [v["Key"] for v in rest["Versions"]][:2] == ["b/1", "b/1"]
    after_key = entries(s3, bucket, KeyMarker="b/1")
    assert after_key["Versions"][0]["Key"] == "b/2"
    rolled = entries(s3, bucket, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["b/", "folder/"]
    assert sorted({v["Key"] for v in rolled["Versions"]}) == ["a", "c"]
    assert {v["Key"] for v in entries(s3, bucket, Prefix="b/")["Versions"]} == {"b/1", "b/2"}
    assert entries(s3, bucket, MaxKeys=0).get("Versions") is None


def test_emptying_a_bucket_the_way_s3_tests_do(s3, bucket):
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"y")
    s3.delete_object(Bucket=bucket, Key="k0")
    s3.put_object(Bucket=bucket, Key="dir/", Body=b"")
    listed = entries(s3, bucket)
    objects = [{"Key": e["Key"], "VersionId": e["VersionId"]}
               for e in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    assert len(answer["Deleted"]) == len(objects) and "Errors" not in answer
    markers = [d for d in answer["Deleted"] if d.get("DeleteMarker")]
    assert [d["DeleteMarkerVersionId"] for d in markers] == [listed["DeleteMarkers"][0]["VersionId"]]
    leftover = entries(s3, bucket)
    assert "Versions" not in leftover and "DeleteMarkers" not in leftover, leftover
    s3.delete_bucket(Bucket=bucket)


def test_bad_version_ids_and_markers(s3, bucket):
    s3.put_object(Bucket=bucket, Key="f", Body=b"x")
    for bad in ("abc", "0", "dm-", "dm-nan", "dm--5", "1.5"):
        expect_error("InvalidArgument", 400, s3.delete_object, Bucket=bucket, Key="f", VersionId=bad)
    expect_error("InvalidArgument", 400, s3.list_object_versions, Bucket=bucket, VersionIdMarker="1")
    expect_error("InvalidArgument", 400, s3.list_object_versions, Bucket=bucket, KeyMarker="f",
                 VersionIdMarker="zz")
    expect_error("NoSuchBucket", 404, s3.list_object_versions, Bucket=f"nope-{uuid.uuid4().hex[:8]}")
    assert s3.get_object(Bucket=bucket, Key="f")["Body"].read() == b"x"  # nothing was touched


def test_a_key_without_a_write_grant_cannot_delete_a_version(cluster, s3, bucket):
    v1 = s3.put_object(Bucket=bucket, Key="keep", Body=b"1")["VersionId"]
    with Client(cluster.url) as native:
        key = native.create_key("reader", grants=[{"prefix": f"{bucket}/", "access": "read"}])
    reader = s3_client(cluster.s3_url(), key["access_key"], key["secret_key"])
    assert [v["VersionId"] for v in reader.list_object_versions(Bucket=bucket)["Versions"]] == [v1]
    expect_error("AccessDenied", 403, reader.delete_object, Bucket=bucket, Key="keep", VersionId=v1)
    answer = reader.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep", "VersionId": v1}]})
    assert [e["Code"] for e in answer["Errors"]] == ["AccessDenied"]
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"1"


def test_put_bucket_versioning_enabled_is_accepted_suspended_is_not(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    expect_error("NotImplemented", 501, s3.put_bucket_versioning, Bucket=bucket,
                 VersioningConfiguration={"Status": "Suspended"})
    expect_error("NotImplemented", 501, s3.put_bucket_versioning, Bucket=bucket, MFA="serial 123456",
                 VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_reading_a_deleted_key_says_it_has_a_delete_marker(s3, bucket):
    s3.put_object(Bucket=bucket, Key="gone", Body=b"x")
    marker = s3.delete_object(Bucket=bucket, Key="gone")["VersionId"]
    for read in (s3.head_object, s3.get_object):
        error = expect_error("404" if read == s3.head_object else "NoSuchKey", 404, read, Bucket=bucket, Key="gone")
        headers = error.response["ResponseMetadata"]["HTTPHeaders"]
        assert headers.get("x-amz-delete-marker") == "true" and headers.get("x-amz-version-id") == marker
    never = expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="never")
    assert "x-amz-delete-marker" not in never.response["ResponseMetadata"]["HTTPHeaders"]
    again = s3.put_object(Bucket=bucket, Key="gone", Body=b"y")  # written again: the marker is not the latest
    assert s3.get_object(Bucket=bucket, Key="gone")["Body"].read() == b"y"
    s3.delete_object(Bucket=bucket, Key="gone", VersionId=again["VersionId"])  # ... until that version goes
    error = expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="gone")
    assert error.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-version-id") == marker
