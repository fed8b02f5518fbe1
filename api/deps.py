"""FastAPI dependencies, all in one place: each handler names what it needs with ``Annotated``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from api.metrics import GatewayMetrics
from api.rate_limits import Operation, RateLimitGuard
from api.send_command import SendCommand
from api.services import GatewayServices
from domain.errors import DomainError
from domain.names import normalise_username
from infra.mongo.read_models import ReadModels
from infra.security.passwords import Passwords
from infra.security.tokens import TokenService
from infra.settings import Settings


def get_services(request: Request) -> GatewayServices:
    services: GatewayServices = request.app.state.services
    return services


def get_settings(request: Request) -> Settings:
    return get_services(request).settings


def get_send_command(request: Request) -> SendCommand:
    return get_services(request).send


def get_read_models(request: Request) -> ReadModels:
    return get_services(request).read_models


def get_tokens(request: Request) -> TokenService:
    return get_services(request).tokens


def get_passwords(request: Request) -> Passwords:
    return get_services(request).passwords


def get_metrics(request: Request) -> GatewayMetrics:
    return get_services(request).metrics


ServicesDep = Annotated[GatewayServices, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SendCommandDep = Annotated[SendCommand, Depends(get_send_command)]
ReadModelsDep = Annotated[ReadModels, Depends(get_read_models)]
TokensDep = Annotated[TokenService, Depends(get_tokens)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]


# Rate limits (api/rate_limits.py): over a limit, RateLimited becomes 429 with Retry-After (app.py).
def get_rate_limits(request: Request) -> RateLimitGuard:
    services = get_services(request)
    return RateLimitGuard(services.rate_limiter, services.settings.rate_limits, services.metrics)


def client_address(request: Request) -> str:
    """The peer address (behind a proxy: what the ASGI server's trusted forwarded headers say)."""
    return request.client.host if request.client else "unknown"


def limit_by_address(operation: Operation) -> Callable[[Request], Awaitable[None]]:
    async def limit(request: Request) -> None:
        await get_rate_limits(request).check(operation, client_address(request))

    return limit


async def limit_login(request: Request) -> None:
    """Login: per client address, then per username (whatever the address: brute force)."""
    limits = get_rate_limits(request)
    await limits.check("login_address", client_address(request))
    username = await _username_of(request)
    if username is not None:
        await limits.check("login_username", username)


async def _username_of(request: Request) -> str | None:
    # FastAPI has read (and cached) the body before solving dependencies; a body it will refuse
    # with 422 still counts against the address above.
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    username = body.get("username") if isinstance(body, dict) else None
    if not isinstance(username, str) or not username:
        return None
    try:
        return normalise_username(username)  # the same account however it is spelled
    except DomainError:
        return username[:256]


LoginRateLimit = Annotated[None, Depends(limit_login)]
RegisterRateLimit = Annotated[None, Depends(limit_by_address("register_address"))]
RefreshRateLimit = Annotated[None, Depends(limit_by_address("refresh_address"))]
