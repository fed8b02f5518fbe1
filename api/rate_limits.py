"""Rate limits of the gateway: the port, the operation classes and the one check both transports use.

Every socket event is limited per user and per class of event (``socket_operation``); the auth
endpoints per client address, and login also per username. The limits come from
``Settings.rate_limits``; the counting is done by a ``RateLimiter`` (GCRA in Redis in production,
so the limits hold across gateway processes). docs/PROTOCOL.md lists the classes and defaults.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Literal, Protocol

from api.metrics import GatewayMetrics
from infra.rate_limit import Decision
from infra.settings import RateLimit, RateLimits

log = logging.getLogger("parley.gateway")

Operation = Literal[
    "command",
    "query",
    "search",
    "media",
    "keys",
    "typing",
    "login_address",
    "login_username",
    "register_address",
    "refresh_address",
]

# Socket events by name prefix; the others by the kind their handler was registered with.
_PREFIX_CLASSES: tuple[tuple[str, Operation], ...] = (("search:", "search"), ("media:", "media"), ("keys:", "keys"))
_KIND_CLASSES: dict[str, Operation] = {"command": "command", "query": "query", "ephemeral": "typing"}


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: RateLimit) -> Decision:
        """Count one call against ``key``: allowed, or refused with the seconds until it would be."""
        ...


class RateLimited(Exception):
    def __init__(self, operation: Operation, retry_after_s: float) -> None:
        super().__init__(f"{operation}: rate limited, retry after {retry_after_s:.3f} s")
        self.operation = operation
        self.retry_after_s = retry_after_s


def socket_operation(event: str, kind: str) -> Operation:
    """The class a socket event is counted in (unknown events count as queries)."""
    for prefix, operation in _PREFIX_CLASSES:
        if event.startswith(prefix):
            return operation
    return _KIND_CLASSES.get(kind, "query")


def subject_key(operation: Operation, subject: str) -> str:
    """The limiter key: operation and a hash of the subject (a user id, client address or
    username), so no username or address is kept in clear in Redis."""
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{operation}:{digest}"


class RateLimitGuard:
    """The one check: raises ``RateLimited`` (and counts it in the metrics) when over the limit."""

    def __init__(self, limiter: RateLimiter, limits: RateLimits, metrics: GatewayMetrics) -> None:
        self.limiter = limiter
        self.limits = limits
        self.metrics = metrics

    async def check(self, operation: Operation, subject: str) -> None:
        if not self.limits.enabled:
            return
        limit: RateLimit = getattr(self.limits, operation)
        decision = await self.limiter.hit(subject_key(operation, subject), limit)
        if not decision.allowed:
            self.metrics.rate_limited.labels(operation=operation).inc()
            raise RateLimited(operation, decision.retry_after_s)
