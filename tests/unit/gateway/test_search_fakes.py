"""The in-memory fakes of the gateway's ports hold the same contracts as the real adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from infra.authz_cache import InMemoryAuthzCache
from infra.objects import InMemoryObjectStore
from infra.search_cache import InMemorySearchCache
from infra.search_index import InMemorySearchIndex
from projections.search import IndexOp
from tests.contracts.authz_cache import AuthzCacheContract
from tests.contracts.object_store import ObjectStoreContract
from tests.contracts.search_cache import SearchCacheContract
from tests.contracts.search_index import SearchIndexContract, Write


class TestInMemorySearchIndex(SearchIndexContract):
    @pytest.fixture
    def index(self) -> InMemorySearchIndex:
        return InMemorySearchIndex()

    @pytest.fixture
    def write(self, index: InMemorySearchIndex) -> Write:
        async def write(ops: Sequence[IndexOp]) -> None:
            await index.write(ops)

        return write


class TestInMemorySearchCache(SearchCacheContract):
    @pytest.fixture
    def cache(self) -> InMemorySearchCache:
        return InMemorySearchCache()


class TestInMemoryAuthzCache(AuthzCacheContract):
    @pytest.fixture
    def cache(self) -> InMemoryAuthzCache:
        return InMemoryAuthzCache()


class TestInMemoryObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryObjectStore:
        return InMemoryObjectStore()

    @pytest.fixture
    async def http(self, store: InMemoryObjectStore) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(transport=store.transport()) as client:
            yield client
