"""The user's own account: ``DELETE /users/me`` erases it (crypto-shredding, docs/THREAT-MODEL.md)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict

from api.deps import ReadModelsDep, SendCommandDep, TokensDep
from api.send_command import Command, CommandRefused
from domain.accounts import ERASE, account_stream_id
from infra.logging import correlation_id_var
from infra.security.tokens import InvalidToken

router = APIRouter(prefix="/users", tags=["users"])

ERASURE_VISIBLE_TIMEOUT_S = 5.0
_bearer = HTTPBearer(auto_error=False)


class ErasureResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    erased: bool


def _unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail="invalid or missing access token", headers={"WWW-Authenticate": "Bearer"}
    )


@router.delete(
    "/me",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ErasureResponse,
    summary="Erase my account: my personal data becomes unreadable everywhere, my tokens stop working",
    responses={401: {"description": "No valid access token, or its user is unknown or erased already"}},
)
async def erase_me(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    tokens: TokensDep,
    read_models: ReadModelsDep,
    send: SendCommandDep,
) -> ErasureResponse:
    if credentials is None:
        raise _unauthorized()
    try:
        user_id = tokens.verify(credentials.credentials, "access").sub
    except InvalidToken:
        raise _unauthorized() from None
    if not await read_models.user_exists(user_id):
        raise _unauthorized()
    command = Command(
        type=ERASE,
        aggregate_id=account_stream_id(user_id),
        actor_id=user_id,
        correlation_id=correlation_id_var.get() or str(uuid.uuid4()),
        payload={"user_id": user_id},
    )

    async def erased_in_views(stream_id: str, version: int) -> bool:
        return not await read_models.user_exists(user_id)

    try:
        # Answered once the views show the erasure (bounded): a login right after the 202 fails.
        await send(command, erased_in_views, within_s=ERASURE_VISIBLE_TIMEOUT_S)
    except CommandRefused as refused:
        if refused.code == "unavailable":
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=refused.message) from None
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, detail="internal error") from None
    return ErasureResponse(user_id=user_id, erased=True)
