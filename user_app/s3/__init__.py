"""The S3-compatible API: the user app's second port (``S3_PORT``, default 8333), the same namespace as the
user API (README "S3").

A bucket is a top-level folder of RingFS and an object key the rest of the path, so a file written with
``ringfs put docs/a.pdf`` is object ``a.pdf`` of bucket ``docs`` and the other way round. Requests are
authenticated with AWS Signature V4 (``shared/auth/sigv4.py``) by the same access keys as the user API, and
every key's grants apply to ``bucket/key``. Modules, outermost first:

* ``app``: the ASGI app, one route per operation chosen by method, bucket, key and sub-resource;
* ``auth``: SigV4 (header or presigned) -> the request's :class:`Principal`;
* ``payload``: the request body as verified bytes (signed SHA-256, aws-chunked signatures, checksums);
* ``names``: bucket names and object keys <-> RingFS paths;
* ``buckets``, ``listing``, ``objects``: the operations;
* ``errors``, ``xml``: S3's XML error format and documents.
"""
