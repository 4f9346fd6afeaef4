"""S3 or any S3-compatible store (MinIO, R2, moto) through boto3."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from stillhouse.config import StorageSettings
from stillhouse.errors import ObjectNotFound, StorageUnavailable
from stillhouse.storage.base import StoredObject, describe, validate_key

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


class S3Storage:
    """Objects in one bucket; presigned GET URLs."""

    def __init__(self, settings: StorageSettings) -> None:
        assert settings.s3_bucket, "settings validation requires a bucket for s3"
        self._bucket = settings.s3_bucket
        self._expiry = settings.url_expiry_s
        self._client: S3Client = _client(settings, settings.s3_endpoint_url)
        # URLs for people are signed for the endpoint they can reach (a compose MinIO is
        # `minio:9000` to the services, `localhost:9000` to a browser).
        public = settings.s3_public_endpoint_url
        self._public: S3Client = _client(settings, public) if public else self._client

    @property
    def bucket(self) -> str:
        return self._bucket

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        validate_key(key)
        try:
            self._client.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, key) from exc
        return describe(key, self._bucket, data, content_type)

    def get(self, key: str) -> bytes:
        validate_key(key)
        try:
            return self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, key) from exc

    def content_type(self, key: str) -> str:
        validate_key(key)
        try:
            return self._client.head_object(Bucket=self._bucket, Key=key)["ContentType"]
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, key) from exc

    def url(self, key: str, expires_s: int | None = None, *, for_workers: bool = False) -> str:
        validate_key(key)
        client = self._client if for_workers else self._public
        return client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": key},
            ExpiresIn=expires_s or self._expiry,
        )

    def put_url(self, key: str, content_type: str, expires_s: int) -> str:
        """A URL that stores one object of `content_type` under `key` when PUT to, signed
        for the services' endpoint (stillhouse.storage.over_http)."""
        validate_key(key)
        return self._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self._bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=expires_s,
        )

    def delete(self, key: str) -> None:
        validate_key(key)
        self._client.delete_object(Bucket=self._bucket, Key=key)


def _client(settings: StorageSettings, endpoint: str | None) -> S3Client:
    key_id = settings.s3_access_key_id
    secret = settings.s3_secret_access_key
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=key_id.get_secret_value() if key_id else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=Config(
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": 5},
            # Custom endpoints (MinIO, moto) rarely resolve bucket subdomains.
            s3={"addressing_style": "path" if endpoint else "auto"},
        ),
    )
    return client


def _translate(exc: BotoCoreError | ClientError, key: str) -> Exception:
    """Not found, or unavailable with a message that carries no credentials."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"NoSuchKey", "404", "NotFound"}:
            return ObjectNotFound(key)
        return StorageUnavailable(f"storage refused {key}: {code or 'error'}")
    return StorageUnavailable(f"storage unreachable: {type(exc).__name__}")
