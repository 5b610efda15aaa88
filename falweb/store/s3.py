"""An S3-compatible object store (AWS S3, R2, MinIO, GCS's S3 API), spoken to in plain S3.

Settings: ``FALWEB_STORAGE_URL`` (``s3://bucket/prefix``), ``FALWEB_S3_ENDPOINT_URL`` (any
store but AWS), ``FALWEB_S3_REGION``. Credentials are boto3's usual ones
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, an instance role): falweb never
reads, logs or answers them.
"""

import functools

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError

__all__ = ["BotoCoreError", "ClientError", "client_from", "error_code"]


def client_from(config):
    """A boto3 S3 client for the store the settings name: one per process and store, as
    boto3's clients are thread-safe and take a good part of a second to build."""
    endpoint = (config.get("FALWEB_S3_ENDPOINT_URL") or "").strip() or None
    region = (config.get("FALWEB_S3_REGION") or "").strip() or None
    return _client(endpoint, region)


@functools.lru_cache(maxsize=8)
def _client(endpoint, region):
    options = Config(
        signature_version="s3v4",
        # Path-style URLs work on every S3-compatible store (MinIO, moto, a bucket name
        # with dots); AWS itself keeps its default.
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10, read_timeout=60,
        max_pool_connections=32,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                          config=options)


def error_code(exc):
    """The S3 error code of a ``ClientError`` (``NoSuchKey``, ``EntityTooSmall``...)."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""
