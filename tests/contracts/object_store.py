"""The ObjectStore contract (api/media.py): presigned URLs that work over plain HTTP, stat, removal."""

from __future__ import annotations

import os
import uuid

import httpx

from api.media import ObjectStore


def fresh_key() -> str:
    return f"contract/{uuid.uuid4().hex}"


class ObjectStoreContract:
    """Subclasses provide a ``store`` fixture and an ``http`` client that reaches its URLs."""

    async def test_a_missing_object_stats_as_none(self, store: ObjectStore) -> None:
        assert await store.stat(fresh_key()) is None

    async def test_put_through_the_upload_url_then_stat_and_download(
        self, store: ObjectStore, http: httpx.AsyncClient
    ) -> None:
        key, body = fresh_key(), os.urandom(1234)
        url = await store.upload_url(key, 60)
        put = await http.put(url, content=body, headers={"Content-Type": "image/png"})
        assert put.status_code == 200
        info = await store.stat(key)
        assert info is not None and (info.size, info.content_type) == (1234, "image/png")
        got = await http.get(await store.download_url(key, 60, "a.png"))
        assert got.status_code == 200 and got.content == body

    async def test_an_upload_url_does_not_download_nor_name_another_key(
        self, store: ObjectStore, http: httpx.AsyncClient
    ) -> None:
        key = fresh_key()
        url = await store.upload_url(key, 60)
        assert (await http.put(url, content=b"mine")).status_code == 200
        assert (await http.get(url)).status_code in (403, 405)
        other = url.replace(key, fresh_key())
        assert (await http.put(other, content=b"theirs")).status_code == 403

    async def test_remove_is_idempotent(self, store: ObjectStore, http: httpx.AsyncClient) -> None:
        key = fresh_key()
        assert (await http.put(await store.upload_url(key, 60), content=b"x")).status_code == 200
        await store.remove(key)
        assert await store.stat(key) is None
        await store.remove(key)  # again: no error
        assert (await http.get(await store.download_url(key, 60))).status_code == 404
