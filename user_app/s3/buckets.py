"""Bucket operations (S3 API reference): ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
GetBucketLocation, GetBucketVersioning. A bucket is a top-level folder: an explicit one (CreateBucket makes
it, so it can be empty) or one implied by the files in it (``ringfs put docs/a.pdf`` makes bucket ``docs``).

Access: listing and heading a bucket need a grant that reads something in it; creating and deleting one,
a grant that writes all of it (``<bucket>/``, or a shorter prefix such as the root key's ``""``).
"""

from __future__ import annotations

from starlette.responses import Response

from shared.errors import Conflict, Forbidden, NotFound
from user_app.auth.audit import audited
from user_app.s3 import xml
from user_app.s3.context import S3Request
from user_app.s3.errors import S3Error, no_such_bucket, not_implemented
from user_app.s3.names import bucket_folder, check_new_bucket_name
from user_app.s3.payload import read_small

DEFAULT_REGION = "us-east-1"  # the region whose LocationConstraint is empty and that allows re-creation


def owner(parent, ctx: S3Request, tag: str = "Owner") -> None:
    """Append ``<Owner>`` (or ``tag``): RingFS has no bucket owners; the calling key stands in for one."""
    xml.add_all(xml.add(parent, tag), [("ID", ctx.principal.access_key), ("DisplayName", ctx.principal.name)])


def _check_reads(ctx: S3Request, folder: str) -> None:
    if not ctx.principal.reads_anything_under(folder):
        raise Forbidden(f"access key {ctx.principal.access_key} may not read anything in bucket {folder!r}")


def _check_writes_all(ctx: S3Request, folder: str) -> None:
    if not ctx.principal.may_write(folder + "/"):
        raise Forbidden(f"access key {ctx.principal.access_key} may not write all of bucket {folder!r}")


MAX_BUCKETS = 10_000  # ListBuckets' max-buckets bound


async def list_buckets(ctx: S3Request) -> Response:
    """ListBuckets: the top-level folders the key reads something in, by name; ``prefix``,
    ``max-buckets`` (1-10,000) and ``continuation-token`` (the last name of the previous page) page it."""
    prefix = ctx.query("prefix") or ""
    after = ctx.query("continuation-token")
    raw_max = ctx.query("max-buckets")
    if raw_max is not None and (not raw_max.isascii() or not raw_max.isdigit()
                                or not 1 <= int(raw_max) <= MAX_BUCKETS):
        raise S3Error("InvalidArgument", f"max-buckets must be an integer from 1 to {MAX_BUCKETS}", 400,
                      ArgumentName="max-buckets", ArgumentValue=raw_max[:32])
    limit = int(raw_max) if raw_max is not None else None
    listing = await ctx.services.leader.rpc_json("GET", "/list", params={"folder": "", "recursive": "false"})
    entries = sorted((e for e in listing.get("entries", []) if e.get("type") == "dir"
                      and e["name"].startswith(prefix) and (after is None or e["name"] > after)
                      and ctx.principal.reads_anything_under(e["name"])), key=lambda e: e["name"].encode())
    page = entries if limit is None else entries[:limit]
    root = xml.document("ListAllMyBucketsResult")
    owner(root, ctx)
    buckets = xml.add(root, "Buckets")
    for entry in page:
        xml.add_all(xml.add(buckets, "Bucket"), [("Name", entry["name"]),
                                                  ("CreationDate", xml.iso_time(entry.get("created_at") or 0.0)),
                                                  ("BucketRegion", ctx.settings.s3_region)])
    if len(page) < len(entries):
        xml.add(root, "ContinuationToken", page[-1]["name"])
    if prefix:
        xml.add(root, "Prefix", prefix)
    return ctx.xml(root)


async def create_bucket(ctx: S3Request) -> Response:
    """CreateBucket. ``CreateBucketConfiguration``'s ``LocationConstraint`` must be this endpoint's region
    (empty for us-east-1). A bucket that exists already: 200 in us-east-1, ``BucketAlreadyOwnedByYou``
    elsewhere, as AWS answers; a top-level *file* of that name: ``BucketAlreadyExists``."""
    check_new_bucket_name(ctx.bucket)
    folder = bucket_folder(ctx.bucket)
    _check_writes_all(ctx, folder)
    body = await read_small(ctx.request, ctx.caller.verified, xml.MAX_XML_BODY)
    region = ctx.settings.s3_region
    if body.strip():
        constraint = xml.child_text(xml.parse(body, "CreateBucketConfiguration"), "LocationConstraint") or ""
        if constraint not in (region, "" if region == DEFAULT_REGION else region):
            raise S3Error("IllegalLocationConstraintException",
                          f"The {constraint!r} location constraint is incompatible with the region of this "
                          f"endpoint, {region!r}.", 400)
    try:
        with audited(ctx.principal, "s3 create bucket", folder):
            made = await ctx.services.leader.rpc_create_folder(folder)
    except Conflict:
        raise S3Error("BucketAlreadyExists", "The requested bucket name is not available: a file of that name "
                      "is at the top of the namespace.", 409, BucketName=ctx.bucket) from None
    if not made.get("created", True) and region != DEFAULT_REGION:
        raise S3Error("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded "
                      "and you already own it.", 409, BucketName=ctx.bucket)
    ctx.buckets.seen(folder)
    return Response(status_code=200, headers={"Location": f"/{ctx.bucket}"})


async def head_bucket(ctx: S3Request) -> Response:
    folder = bucket_folder(ctx.bucket)
    _check_reads(ctx, folder)
    await ctx.require_bucket()
    return Response(status_code=200, headers={"x-amz-bucket-region": ctx.settings.s3_region})


async def delete_bucket(ctx: S3Request) -> Response:
    """DeleteBucket: only an empty one (``BucketNotEmpty`` otherwise; a bucket implied by files is never
    empty)."""
    folder = bucket_folder(ctx.bucket)
    _check_writes_all(ctx, folder)
    leader = ctx.services.leader
    try:
        state = await leader.rpc_folder(folder)
    except NotFound:
        raise no_such_bucket(ctx.bucket) from None
    not_empty = S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty", 409, BucketName=ctx.bucket)
    if not state.get("empty", False) or not state.get("explicit", False):
        raise not_empty
    try:
        with audited(ctx.principal, "s3 delete bucket", folder):
            await leader.rpc_delete_folder(folder, only_if_empty=True)
    except Conflict:
        raise not_empty from None
    except NotFound:
        raise no_such_bucket(ctx.bucket) from None
    ctx.buckets.forget(folder)
    return Response(status_code=204)


async def get_bucket_location(ctx: S3Request) -> Response:
    _check_reads(ctx, bucket_folder(ctx.bucket))
    await ctx.require_bucket()
    root = xml.document("LocationConstraint")
    region = ctx.settings.s3_region
    root.text = "" if region == DEFAULT_REGION else region
    return ctx.xml(root)


async def get_bucket_versioning(ctx: S3Request) -> Response:
    """GetBucketVersioning: ``Enabled`` for every bucket, as RingFS keeps every version of every file."""
    _check_reads(ctx, bucket_folder(ctx.bucket))
    await ctx.require_bucket()
    root = xml.document("VersioningConfiguration")
    xml.add(root, "Status", "Enabled")
    return ctx.xml(root)


async def put_bucket_versioning(ctx: S3Request) -> Response:
    """PutBucketVersioning: ``Enabled`` is what every bucket is already (200, nothing changes);
    ``Suspended`` and MFA delete answer ``501 NotImplemented``: RingFS keeps every version of every file."""
    _check_writes_all(ctx, bucket_folder(ctx.bucket))
    doc = xml.parse(await read_small(ctx.request, ctx.caller.verified, xml.MAX_XML_BODY), "VersioningConfiguration")
    await ctx.require_bucket()
    status = (xml.child_text(doc, "Status") or "").strip()
    mfa = (xml.child_text(doc, "MfaDelete") or "Disabled").strip()
    if status not in ("Enabled", "Suspended") or mfa not in ("Enabled", "Disabled"):
        raise xml.malformed("Status must be Enabled or Suspended, MfaDelete Enabled or Disabled")
    if status == "Suspended" or mfa == "Enabled":
        raise not_implemented("Suspending versioning or MFA delete (RingFS keeps every version of every file)")
    return Response(status_code=200)
