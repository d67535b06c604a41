"""Trust between services and at rest (README "Security").

* :mod:`shared.auth.cluster_secret`: the cluster secret and the keys derived from it (HKDF).
* :mod:`shared.auth.rpc_signing`: the cluster credential on every internal request (HMAC, nonce, expiry).
* :mod:`shared.auth.service_auth`: one service's credential, TLS context and ``/metrics`` token.
* :mod:`shared.auth.middleware`: the leader's and chunk servers' boundary (401 before any route).
* :mod:`shared.auth.server_identity`: each chunk server's own key (health checks, re-registration).
* :mod:`shared.auth.sealing`: secrets at rest in the leader's SQL (Fernet).
* :mod:`shared.auth.key_material`: fresh access key ids and secrets.
* :mod:`shared.auth.sigv4`: AWS Signature Version 4 verification (header and presigned), for the S3 API.
* :mod:`shared.auth.aws_chunked`: ``aws-chunked`` upload bodies, every chunk signature checked.
* :mod:`shared.auth.checksums`: ``x-amz-checksum-*`` (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256) and Content-MD5.
"""
