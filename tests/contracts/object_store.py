"""The ObjectStore contract (api/media.py): presigned URLs that work over plain HTTP, stat, removal."""

from __future__ import annotations

import os
import uuid

import httpx

from api.media import ObjectStore


def fresh_key() -> str:
    return f"contract/{uuid.uuid4().hex}"


class ObjectStoreContract:
    """Subclasses provide a ``store`` fixture."""

    async def test_a_missing_object_stats_as_none(self, store: ObjectStore) -> None:
        assert await store.stat(fresh_key()) is None

    async def test_put_through_the_upload_url_then_stat_and_download(self, store: ObjectStore) -> None:
        key, body = fresh_key(), os.urandom(1234)
        url = await store.upload_url(key, 60)
        async with httpx.AsyncClient(timeout=10) as http:
            put = await http.put(url, content=body, headers={"Content-Type": "image/png"})
            assert put.status_code == 200
            info = await store.stat(key)
            assert info is not None and (info.size, info.content_type) == (1234, "image/png")
            got = await http.get(await store.download_url(key, 60, "a.png"))
            assert got.status_code == 200 and got.content == body

    async def test_remove_is_idempotent(self, store: ObjectStore) -> None:
        key = fresh_key()
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.put(await store.upload_url(key, 60), content=b"x")).status_code == 200
        await store.remove(key)
        assert await store.stat(key) is None
        await store.remove(key)  # again: no error
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(await store.download_url(key, 60))).status_code == 404
