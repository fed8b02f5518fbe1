"""The gateway's adapters against the session stack: readiness and the search client."""

from __future__ import annotations

import uuid

import pytest

from api import bootstrap
from infra.search_client import search_client
from infra.settings import Settings

pytestmark = pytest.mark.integration


async def test_readiness_of_the_running_platform(stack_settings: Settings) -> None:
    services = bootstrap.gateway(stack_settings)
    await services.start()
    try:
        checks = await services.readiness()
    finally:
        await services.close()
    assert checks == {name: "ok" for name in ("kafka", "mongodb", "redis", "elasticsearch", "s3", "worker")}


async def test_readiness_names_what_is_missing(stack_settings: Settings) -> None:
    settings = stack_settings.model_copy(
        update={"topic_prefix": f"nobody-{uuid.uuid4().hex[:6]}", "media_bucket": "no-such-bucket"}
    )
    services = bootstrap.gateway(settings)  # not started: Kafka is reported, not raised
    try:
        checks = await services.readiness()
    finally:
        await services.close()
    assert checks["mongodb"] == checks["redis"] == checks["elasticsearch"] == "ok"
    assert checks["kafka"] != "ok" and checks["s3"] != "ok" and checks["worker"] != "ok"


async def test_search_client_speaks_to_the_local_server(stack_settings: Settings) -> None:
    es = search_client(stack_settings)
    index = f"it-gateway-{uuid.uuid4().hex[:8]}"
    try:
        await es.index(index=index, document={"body": "hello world"}, refresh=True)
        found = await es.search(index=index, query={"match": {"body": "hello"}})
        assert found["hits"]["total"]["value"] == 1
    finally:
        await es.options(ignore_status=404).indices.delete(index=index)
        await es.close()
