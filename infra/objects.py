"""The media object store: presigned URLs, stat and removal on the S3 server (the minio client).

The minio client blocks, so every network call runs in a thread. Presigning does not touch the
network (the region is set), and is done with a client for the endpoint clients use
(``s3_public_endpoint``), since the host is part of what is signed.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
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


class InMemoryObjectStore:
    """The object store for unit tests: the same contract, its URLs served by `transport()` (an
    httpx transport), with a random token per URL and its expiry checked on use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._grants: dict[str, tuple[str, str, float]] = {}  # token -> (method, key, expires)

    def _url(self, method: str, key: str, ttl_s: int) -> str:
        token = secrets.token_urlsafe(16)
        self._grants[token] = (method, key, self._clock() + ttl_s)
        return f"http://objects.test/{key}?token={token}"

    async def upload_url(self, key: str, ttl_s: int) -> str:
        return self._url("PUT", key, ttl_s)

    async def download_url(self, key: str, ttl_s: int, filename: str | None = None) -> str:
        return self._url("GET", key, ttl_s)

    async def stat(self, key: str) -> ObjectInfo | None:
        found = self._objects.get(key)
        return None if found is None else ObjectInfo(len(found[0]), found[1])

    async def remove(self, key: str) -> None:
        self._objects.pop(key, None)

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            grant = self._grants.get(request.url.params.get("token", ""))
            key = request.url.path.lstrip("/")
            if grant is None or grant[:2] != (request.method, key) or self._clock() > grant[2]:
                return httpx.Response(403)
            if request.method == "PUT":
                content_type = request.headers.get("content-type", "application/octet-stream")
                self._objects[key] = (request.content, content_type)
                return httpx.Response(200)
            found = self._objects.get(key)
            return httpx.Response(404) if found is None else httpx.Response(200, content=found[0])

        return httpx.MockTransport(handle)
