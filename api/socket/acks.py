"""The ack every client event gets: ``{ok, data | error, correlation_id}``."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from domain.errors import ErrorCode

Ack = dict[str, Any]
M = TypeVar("M", bound=BaseModel)

# Codes that mean "the gateway refused this command" (they leave a Rejection in the trail);
# unavailable and internal are failures to decide, not refusals.
REFUSAL_CODES: frozenset[str] = frozenset(
    {"invalid", "unauthorized", "forbidden", "not_found", "conflict", "rate_limited"}
)


class AckError(Exception):
    """Ends an event with an error ack. ``stage`` says who refused it: the gateway or the domain."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retry_after: float | None = None,
        stage: Literal["gateway", "domain"] = "gateway",
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.retry_after = retry_after
        self.stage = stage


def ok_ack(data: dict[str, Any], correlation_id: str) -> Ack:
    return {"ok": True, "data": data, "correlation_id": correlation_id}


def error_ack(code: str, message: str, correlation_id: str, retry_after: float | None = None) -> Ack:
    error: dict[str, Any] = {"code": code, "message": message}
    if retry_after is not None:
        error["retry_after"] = retry_after
    return {"ok": False, "error": error, "correlation_id": correlation_id}


def parse_payload(model: type[M], payload: dict[str, Any]) -> M:
    """``payload`` validated by ``model``; an ``invalid`` AckError naming the first bad field otherwise."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise AckError("invalid", f"{where}: {first['msg']}"[:200]) from None
