"""The gateway's ASGI app: FastAPI (HTTP) and python-socketio (path /socket.io) in one app."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import socketio
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError
from starlette.types import ASGIApp

from api import bootstrap
from api.http.middleware import CorrelationMiddleware
from api.http.openapi import DESCRIPTION, mount_docs
from api.http.routers import auth, health, users
from api.rate_limits import RateLimited
from api.services import GatewayServices
from api.socket.server import create_socket_server
from infra.kafka.command_bus import Unavailable
from infra.settings import Settings

log = logging.getLogger("parley.gateway")

SOCKETIO_PATH = "socket.io"


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("parley")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(settings: Settings, services: GatewayServices | None = None) -> ASGIApp:
    """The whole gateway from settings (its services from ``api.bootstrap``). Nothing connects until
    the ASGI lifespan starts; shutdown closes every client."""
    services = services or bootstrap.gateway(settings)
    sio = create_socket_server(services)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        log.info("gateway %s started", services.instance_id)
        try:
            yield
        finally:
            await sio.shutdown()
            await services.close()
            log.info("gateway %s stopped", services.instance_id)

    http = FastAPI(
        title="Parley gateway",
        description=DESCRIPTION,
        version=package_version(),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load Swagger UI and ReDoc from a CDN: served locally instead
        redoc_url=None,
    )
    mount_docs(http)
    http.state.services = services
    http.state.sio = sio
    http.include_router(health.router)
    http.include_router(auth.router)
    http.include_router(users.router)
    http.add_middleware(CorrelationMiddleware, metrics=services.metrics)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: dependency unavailable: %r", request.method, request.url.path, exc)
        return JSONResponse({"detail": "service unavailable, try again"}, status_code=503)

    for exc_type in (Unavailable, TimeoutError, PyMongoError, RedisError):
        http.add_exception_handler(exc_type, unavailable)
    http.add_exception_handler(RateLimited, too_many_requests)
    http.add_exception_handler(RequestValidationError, validation_failed)

    app: ASGIApp = socketio.ASGIApp(sio, other_asgi_app=http, socketio_path=SOCKETIO_PATH)
    return app


async def too_many_requests(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    retry_after = max(1, math.ceil(exc.retry_after_s))  # Retry-After takes whole seconds
    log.info("%s %s: rate limited (%s)", request.method, request.url.path, exc.operation)
    return JSONResponse(
        {"detail": "too many requests", "retry_after": retry_after},
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


async def validation_failed(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body without the rejected values: they may be secrets (passwords, tokens)."""
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)
