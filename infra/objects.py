"""The media object store: presigned URLs, stat and removal on the S3 server (the minio client).

The minio client blocks, so every network call runs in a thread. Presigning does not touch the
network (the region is set), and is done with a client for the endpoint clients use
(``s3_public_endpoint``), since the host is part of what is signed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from minio import Minio
from minio.error import S3Error

from infra.provision import s3_client
from infra.settings import Settings

_MISSING = ("NoSuchKey", "NoSuchObject", "NoSuchBucket")


class ObjectStoreUnavailable(Exception):
    """The S3 server did not answer, or answered with an error that is not about the object."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str


class S3ObjectStore:
    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self._bucket = settings.media_bucket
        self._client = client if client is not None else s3_client(settings)
        public = settings.s3_public_endpoint or settings.s3_endpoint
        secure = settings.s3_secure if settings.s3_public_secure is None else settings.s3_public_secure
        self._signer = Minio(
            public,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=secure,
            region=settings.s3_region,
        )

    async def upload_url(self, key: str, ttl_s: int) -> str:
        return str(self._signer.presigned_put_object(self._bucket, key, expires=timedelta(seconds=ttl_s)))

    async def download_url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        headers: dict[str, str | list[str] | tuple[str]] | None = None
        if filename is not None:
            quoted = filename.replace("\\", "_").replace('"', "_")
            headers = {"response-content-disposition": f'attachment; filename="{quoted}"'}
        url = self._signer.presigned_get_object(
            self._bucket, key, expires=timedelta(seconds=ttl_s), response_headers=headers
        )
        return str(url)

    async def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and content type; None when there is no such object."""

        def call() -> ObjectInfo | None:
            try:
                found = self._client.stat_object(self._bucket, key)
            except S3Error as err:
                if err.code in _MISSING:
                    return None
                raise ObjectStoreUnavailable(f"S3 stat failed: {err.code}") from err
            return ObjectInfo(int(found.size or 0), str(found.content_type or ""))

        try:
            return await asyncio.to_thread(call)
        except ObjectStoreUnavailable:
            raise
        except Exception as exc:
            raise ObjectStoreUnavailable(f"S3 unreachable: {exc!r}") from exc

    async def remove(self, key: str) -> None:
        """Idempotent: removing an object that is not there succeeds."""
        try:
            await asyncio.to_thread(self._client.remove_object, self._bucket, key)
        except S3Error as err:
            if err.code not in _MISSING:
                raise ObjectStoreUnavailable(f"S3 remove failed: {err.code}") from err
        except Exception as exc:
            raise ObjectStoreUnavailable(f"S3 unreachable: {exc!r}") from exc
