"""Elasticsearch client: plain ``application/json`` on the wire.

elasticsearch-py 8 sends ``application/vnd.elasticsearch+json; compatible-with=8`` on every
request; some Elasticsearch-API servers (the local one among them) answer that with 406. A
node class rewrites the media types just before sending; real Elasticsearch accepts both.
"""

from __future__ import annotations

import re
from typing import Any

from elastic_transport import AiohttpHttpNode, HttpHeaders
from elastic_transport._node._base import NodeApiResponse
from elastic_transport.client_utils import DEFAULT
from elasticsearch import AsyncElasticsearch

from infra.settings import Settings

_COMPAT_MIMETYPE = re.compile(r"application/vnd\.elasticsearch\+([a-z-]+)(\s*;\s*compatible-with=\d+)?")


class PlainJsonNode(AiohttpHttpNode):
    """elasticsearch-py 8 always sends ``application/vnd.elasticsearch+json; compatible-with=8``,
    which OpenSearch-compatible servers (the local one included) refuse with 406; send plain
    ``application/json`` instead. Real Elasticsearch 8 accepts both."""

    async def perform_request(  # type: ignore[override]  # the base declares it sync
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        request_timeout: Any = DEFAULT,
    ) -> NodeApiResponse:
        if headers:
            headers = headers.copy()
            for name in ("accept", "content-type"):
                if name in headers:
                    headers[name] = _COMPAT_MIMETYPE.sub(r"application/\1", headers[name])
        return await super().perform_request(
            method, target, body=body, headers=headers, request_timeout=request_timeout
        )


def search_client(settings: Settings, timeout_s: float = 10.0) -> AsyncElasticsearch:
    return AsyncElasticsearch(
        settings.elasticsearch_url,
        node_class=PlainJsonNode,
        headers={"accept": "application/json", "content-type": "application/json"},
        request_timeout=timeout_s,
    )
