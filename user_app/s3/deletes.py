"""DeleteObject and DeleteObjects (S3 API reference). Without a version id, a key's versions go to the
trash and S3 sees a delete marker (``ringfs undelete`` brings them back); with one, a version goes for
good or a delete marker is removed (``user_app/s3/versions.py``). A folder marker's delete removes the
explicit folder only. Something already gone is no error, as in S3."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.responses import Response

from shared.errors import NotFound
from user_app.auth.audit import audited
from user_app.s3 import xml
from user_app.s3.context import S3Request
from user_app.s3.errors import S3Error, from_exception
from user_app.s3.names import ObjectName, bucket_folder, object_name
from user_app.s3.payload import read_small
from user_app.s3.versions import VersionRef, marker_id, parse_version_ref

MAX_DELETE_KEYS = 1000  # DeleteObjects: keys in one request


@dataclass
class Deleted:
    """What one delete did, for its answer's headers or ``<Deleted>`` element: the version id it names,
    and whether that is a delete marker (one made, or one removed)."""

    version_id: str | None = None
    delete_marker: bool = False

    def headers(self) -> dict[str, str]:
        out = {"x-amz-version-id": self.version_id} if self.version_id else {}
        if self.delete_marker:
            out["x-amz-delete-marker"] = "true"
        return out


async def delete_key(ctx: S3Request, name: ObjectName, raw_version: str | None) -> Deleted:
    """Delete the key ``name``, or with a version id ``raw_version`` one version or delete marker of it
    (see the module docstring), after checking the caller may write it. Raises ``InvalidArgument`` for a
    malformed version id, ``AccessDenied`` without a write grant."""
    ref = VersionRef() if raw_version is None else parse_version_ref(raw_version)
    ctx.principal.check_write(name.path)
    leader = ctx.services.leader
    what = "s3 delete" if raw_version is None else f"s3 delete version {raw_version}"
    try:
        with audited(ctx.principal, what, name.path):
            if name.folder:
                if ref.number is None and not ref.is_marker:
                    await leader.rpc_delete_folder(name.path, only_if_empty=False)
                return Deleted(raw_version)
            if ref.number is not None:
                await leader.rpc_delete_version(name.path, ref.number)
                return Deleted(raw_version)
            if ref.is_marker:
                await leader.rpc_undelete(name.path, ref.deleted_at)
                return Deleted(raw_version, delete_marker=True)
            answer = await leader.rpc_delete(name.path)
            return Deleted(marker_id(answer["deleted_at"]), delete_marker=True)
    except NotFound:
        return Deleted(raw_version, delete_marker=ref.is_marker)


async def delete_object(ctx: S3Request) -> Response:
    """DeleteObject, with or without ``versionId``: 204 with ``x-amz-version-id`` and
    ``x-amz-delete-marker`` saying what it did."""
    done = await delete_key(ctx, object_name(bucket_folder(ctx.bucket), ctx.key), ctx.query("versionId"))
    return Response(status_code=204, headers=done.headers())


async def delete_objects(ctx: S3Request) -> Response:
    """DeleteObjects (``POST /bucket?delete``): up to 1,000 keys (with or without a ``VersionId``), each
    answered on its own."""
    bucket = bucket_folder(ctx.bucket)
    doc = xml.parse(await read_small(ctx.request, ctx.caller.verified, xml.MAX_XML_BODY), "Delete")
    quiet = (xml.child_text(doc, "Quiet") or "").strip().lower() == "true"
    objects = xml.children(doc, "Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise xml.malformed(f"a Delete document lists 1 to {MAX_DELETE_KEYS} objects")
    await ctx.require_bucket()
    keys = []
    for obj in objects:
        key = xml.child_text(obj, "Key")
        if key is None:
            raise xml.malformed("every Object of a Delete document needs a Key")
        keys.append((key, xml.child_text(obj, "VersionId") or None))
    limit = asyncio.Semaphore(16)

    async def one(key: str, version: str | None) -> Deleted | S3Error:
        async with limit:
            try:
                return await delete_key(ctx, object_name(bucket, key), version)
            except Exception as exc:  # each key is answered on its own, as S3 does
                error = from_exception(exc)
                if error is None:
                    raise
                return error

    results = await asyncio.gather(*(one(k, v) for k, v in keys))
    root = xml.document("DeleteResult")
    for (key, version), done in zip(keys, results):
        if isinstance(done, Deleted):
            if not quiet:
                marker = done.version_id if done.delete_marker else None
                xml.add_all(xml.add(root, "Deleted"), [
                    ("Key", key), ("VersionId", version),
                    ("DeleteMarker", True if done.delete_marker else None), ("DeleteMarkerVersionId", marker)])
        else:
            xml.add_all(xml.add(root, "Error"), [("Key", key), ("VersionId", version),
                                                 ("Code", done.code), ("Message", done.message)])
    return ctx.xml(root)
