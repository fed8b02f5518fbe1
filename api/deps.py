"""FastAPI dependencies, all in one place: each handler names what it needs with ``Annotated``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.http.metrics import GatewayMetrics
from api.http.services import GatewayServices
from api.read_your_writes import ReadYourWrites
from infra.kafka.command_bus import CommandBus
from infra.mongo.read_models import ReadModels
from infra.security.passwords import Passwords
from infra.security.tokens import TokenService
from infra.settings import Settings


def get_services(request: Request) -> GatewayServices:
    services: GatewayServices = request.app.state.services
    return services


def get_settings(request: Request) -> Settings:
    return get_services(request).settings


def get_bus(request: Request) -> CommandBus:
    return get_services(request).bus


def get_read_models(request: Request) -> ReadModels:
    return get_services(request).read_models


def get_tokens(request: Request) -> TokenService:
    return get_services(request).tokens


def get_passwords(request: Request) -> Passwords:
    return get_services(request).passwords


def get_metrics(request: Request) -> GatewayMetrics:
    return get_services(request).metrics


def get_read_your_writes(request: Request) -> ReadYourWrites:
    return get_services(request).read_your_writes


ServicesDep = Annotated[GatewayServices, Depends(get_services)]
ReadYourWritesDep = Annotated[ReadYourWrites, Depends(get_read_your_writes)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BusDep = Annotated[CommandBus, Depends(get_bus)]
ReadModelsDep = Annotated[ReadModels, Depends(get_read_models)]
TokensDep = Annotated[TokenService, Depends(get_tokens)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
