"""Refusals a decider can return. Codes are the client protocol's error codes."""

from __future__ import annotations

from typing import Literal

ErrorCode = Literal[
    "invalid", "unauthorized", "forbidden", "not_found", "conflict", "rate_limited", "unavailable", "internal"
]


class DomainError(Exception):
    """A command the domain refuses. Raised by deciders; carried back to the client as an ack error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


def not_found(what: str = "conversation") -> DomainError:
    return DomainError("not_found", f"{what} not found")


def forbidden(message: str) -> DomainError:
    return DomainError("forbidden", message)


def conflict(message: str) -> DomainError:
    return DomainError("conflict", message)


def invalid(message: str) -> DomainError:
    return DomainError("invalid", message)
