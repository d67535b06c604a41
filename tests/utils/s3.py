"""boto3 against a RingFS cluster, for the S3 tests: a client signed with SigV4 for the root key (or another
key), and checks of the S3 error an operation answers. The ``s3`` and ``bucket`` fixtures
(``tests/conftest.py``) are built on them."""

from __future__ import annotations

import hashlib

import boto3
import pytest
from botocore.client import Config
from botocore.exceptions import ClientError

from tests.utils.auth import ROOT_ACCESS_KEY, ROOT_SECRET_KEY

REGION = "us-east-1"


def s3_client(url: str, access_key: str = ROOT_ACCESS_KEY, secret_key: str = ROOT_SECRET_KEY, **config):
    # signature_version: boto3 presigns with SigV2 for a custom endpoint unless told otherwise (README "S3")
    return boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                      **{"signature_version": "s3v4", **config}))


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def expect_error(code: str, status: int, fn, *args, **kwargs) -> ClientError:
    """Call ``fn``; it must fail with S3 error ``code`` and HTTP ``status``. Returns the error."""
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    assert error_code(info.value) == code, info.value.response
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return info.value


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'
