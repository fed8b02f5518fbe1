"""Registration, login and token refresh."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from api.deps import (
    LoginRateLimit,
    MetricsDep,
    PasswordsDep,
    ReadModelsDep,
    RefreshRateLimit,
    RegisterRateLimit,
    SendCommandDep,
    ServicesDep,
    SettingsDep,
    TokensDep,
)
from api.http.openapi import REGISTER_RESPONSES, TOKEN_RESPONSES
from api.send_command import Command, CommandRefused
from domain.envelope import derive_id
from domain.errors import DomainError
from domain.names import USERNAME_MAX, USERNAME_MIN, normalise_username, username_stream_id
from infra.logging import correlation_id_var
from infra.security.tokens import InvalidToken, TokenPair

router = APIRouter(prefix="/auth", tags=["auth"])

REGISTER_COMMAND = "user:register"
USER_VISIBLE_TIMEOUT_S = 5.0
BAD_CREDENTIALS = "invalid username or password"
BAD_REFRESH = "invalid refresh token"

# Unicode letters, digits and _ . - (\w is Unicode-aware in Python and in ECMAScript's /u mode).
USERNAME_PATTERN = r"^[\w.-]+$"

DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # The domain's rule (domain.names) is the check; the schema states it for readers of /docs.
    username: str = Field(
        description=(
            f"{USERNAME_MIN}..{USERNAME_MAX} letters, digits, '_', '.' or '-', counted after Unicode NFKC "
            "normalisation and case folding (unique case-insensitively)"
        ),
        json_schema_extra={"minLength": USERNAME_MIN, "maxLength": USERNAME_MAX, "pattern": USERNAME_PATTERN},
    )
    password: str = Field(min_length=8, max_length=256)
    display_name: DisplayName | None = None

    @field_validator("username")
    @classmethod
    def _valid_username(cls, value: str) -> str:
        try:
            normalise_username(value)
        except DomainError as exc:
            raise ValueError(exc.message) from None
        return value


class RegisterResponse(BaseModel):
    user_id: str
    username: str


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int

    @classmethod
    def of(cls, pair: TokenPair) -> TokenResponse:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            token_type=pair.token_type,
            expires_in=pair.expires_in,
        )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


@router.post(
    "/register", status_code=status.HTTP_201_CREATED, response_model=RegisterResponse, responses=REGISTER_RESPONSES
)
async def register(
    _limit: RegisterRateLimit,
    body: RegisterRequest,
    send: SendCommandDep,
    passwords: PasswordsDep,
    read_models: ReadModelsDep,
    metrics: MetricsDep,
    services: ServicesDep,
) -> RegisterResponse:
    started = time.perf_counter()
    code = "internal"
    try:
        password_hash = await passwords.hash_async(body.password)
        command_id = str(uuid.uuid4())
        user_id = derive_id(command_id, "user")
        command = Command(
            type=REGISTER_COMMAND,
            aggregate_id=username_stream_id(body.username, services.name_index_key),
            actor_id=user_id,
            correlation_id=correlation_id_var.get() or str(uuid.uuid4()),
            payload={
                "user_id": user_id,
                "username": body.username,
                "display_name": body.display_name,
                "password_hash": password_hash,
            },
            command_id=command_id,
        )

        async def login_works(stream_id: str, version: int) -> bool:
            return await read_models.user_exists(user_id)

        code = "unavailable"
        try:
            # A login right after the 201 must find the user: the answer waits (bounded) until the
            # read models have applied the registration.
            data = await send(command, login_works, within_s=USER_VISIBLE_TIMEOUT_S)
        except CommandRefused as refused:
            code = refused.code
            raise _refusal_status(refused) from None
        code = "ok"
        return RegisterResponse(user_id=str(data.get("user_id", user_id)), username=body.username.strip())
    finally:
        metrics.observe_command(REGISTER_COMMAND, code, time.perf_counter() - started)


def _refusal_status(refused: CommandRefused) -> HTTPException:
    if refused.code == "conflict":
        return HTTPException(status.HTTP_409_CONFLICT, detail=refused.message)
    if refused.code == "invalid":
        return HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body"], "msg": refused.message, "type": "value_error"}],
        )
    if refused.code == "unavailable":
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=refused.message)
    return HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, detail="internal error")


@router.post("/login", response_model=TokenResponse, responses=TOKEN_RESPONSES)
async def login(
    _limit: LoginRateLimit,
    body: LoginRequest,
    settings: SettingsDep,
    passwords: PasswordsDep,
    read_models: ReadModelsDep,
    tokens: TokensDep,
) -> TokenResponse:
    try:
        normalised: str | None = normalise_username(body.username)
    except DomainError:
        normalised = None
    credentials = None
    if normalised is not None:
        async with asyncio.timeout(settings.query_timeout_s):
            credentials = await read_models.credentials(normalised)
    # Unknown users verify a dummy hash, so both refusals take about as long.
    valid = await passwords.verify_async(credentials.password_hash if credentials else None, body.password)
    if credentials is None or not valid:
        raise _unauthorized(BAD_CREDENTIALS)
    return TokenResponse.of(tokens.issue_pair(credentials.user_id))


@router.post("/refresh", response_model=TokenResponse, responses=TOKEN_RESPONSES)
async def refresh(
    _limit: RefreshRateLimit,
    body: RefreshRequest,
    settings: SettingsDep,
    read_models: ReadModelsDep,
    tokens: TokensDep,
) -> TokenResponse:
    try:
        claims = tokens.verify(body.refresh_token, "refresh")
    except InvalidToken:
        raise _unauthorized(BAD_REFRESH) from None
    async with asyncio.timeout(settings.query_timeout_s):
        exists = await read_models.user_exists(claims.sub)
    if not exists:
        raise _unauthorized(BAD_REFRESH)
    return TokenResponse.of(tokens.issue_pair(claims.sub))
