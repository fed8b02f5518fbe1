"""One client event in, exactly one ack out.

``EventRunner.on`` registers a feature handler for an event name. The runner does what every
event shares: reads the correlation id, requires an authenticated session, applies the user's
rate limit for the class of event (api/rate_limits.py) before anything else, requires a dict payload,
turns every failure into an error ack (never an exception in the server, never a dropped
connection), records gateway refusals of commands as Rejections, and writes one log line and
the metrics per event. Feature handlers only translate a payload into a command or a query.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import socketio
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from api.http.correlation import correlation_id_or_new
from api.rate_limits import RateLimited, RateLimitGuard, socket_operation
from api.services import GatewayServices
from api.socket.acks import REFUSAL_CODES, Ack, AckError, error_ack, ok_ack
from api.socket.packets import UndecodablePayload
from domain.errors import DomainError
from infra.kafka.command_bus import Unavailable
from infra.logging import correlation_id_var, message_type_var

log = logging.getLogger("parley.gateway.socket")

EventKind = Literal["command", "query", "ephemeral", "unknown"]


@dataclass
class EventContext:
    """What a handler knows about the event it serves. Command handlers fill in the ids they
    derive, so a refusal can be recorded against them."""

    sid: str
    user_id: str
    event: str
    correlation_id: str
    command_id: str | None = None
    aggregate_id: str | None = None


Handler = Callable[[EventContext, dict[str, Any]], Awaitable[dict[str, Any]]]


class EventRunner:
    def __init__(self, sio: socketio.AsyncServer, services: GatewayServices) -> None:
        self.sio = sio
        self.services = services
        self.rate_limits = RateLimitGuard(services.rate_limiter, services.settings.rate_limits, services.metrics)

    def on(self, event: str, handler: Handler, kind: EventKind) -> None:
        async def entry(sid: str, *args: Any) -> Ack:
            return await self.run(event, sid, args, handler, kind)

        self.sio.on(event, entry)

    async def run(self, event: str, sid: str, args: tuple[Any, ...], handler: Handler, kind: EventKind) -> Ack:
        started = time.perf_counter()
        payload = args[0] if len(args) == 1 else None
        cid = correlation_id_or_new(payload.get("correlation_id") if isinstance(payload, dict) else None)
        cid_token = correlation_id_var.set(cid)
        type_token = message_type_var.set(event)
        ctx: EventContext | None = None
        user_id: str | None = None
        refusal: AckError | None = None
        try:
            user_id = await self._user_of(sid)
            if user_id is None:
                raise AckError("unauthorized", "not authenticated")
            ctx = EventContext(sid=sid, user_id=user_id, event=event, correlation_id=cid)
            # Per user and class of event, before anything else is done for it (see api/rate_limits.py).
            await self.rate_limits.check(socket_operation(event, kind), user_id)
            if isinstance(payload, UndecodablePayload):  # the frame's JSON was refused by the decoder
                raise AckError("invalid", payload.reason)
            if not isinstance(payload, dict):
                raise AckError("invalid", "payload must be a single JSON object")
            ack = ok_ack(await handler(ctx, payload), cid)
        except RateLimited as exc:
            # Not recorded as a Rejection: a flood would turn into as many Kafka writes. The metric
            # and the log line count it.
            retry_after = math.ceil(exc.retry_after_s * 1000) / 1000
            ack = error_ack("rate_limited", f"too many requests, retry after {retry_after:g} s", cid, retry_after)
        except AckError as exc:
            refusal = exc
            ack = error_ack(exc.code, exc.message, cid, exc.retry_after)
        except DomainError as exc:  # a payload rule checked at the gateway (domain helpers raise these)
            refusal = AckError(exc.code, exc.message)
            ack = error_ack(exc.code, exc.message, cid)
        except Unavailable as exc:
            log.warning("%s unavailable: %s", event, exc, extra={"sid": sid, "user_id": user_id})
            ack = error_ack("unavailable", "the service is unavailable, try again", cid)
        except TimeoutError:
            log.warning("%s timed out", event, extra={"sid": sid, "user_id": user_id})
            ack = error_ack("unavailable", "timed out, try again", cid)
        except (PyMongoError, RedisError) as exc:
            log.warning("%s: a dependency failed: %r", event, exc, extra={"sid": sid, "user_id": user_id})
            ack = error_ack("unavailable", "the service is unavailable, try again", cid)
        except Exception:
            log.exception("%s failed", event, extra={"sid": sid, "user_id": user_id})
            ack = error_ack("internal", "internal error", cid)
        try:
            if (
                kind == "command"
                and refusal is not None
                and refusal.stage == "gateway"
                and refusal.code in REFUSAL_CODES
            ):
                await self._record_refusal(event, ctx, user_id, cid, refusal)
        finally:
            self._observe(event, kind, sid, user_id, ack, time.perf_counter() - started)
            message_type_var.reset(type_token)
            correlation_id_var.reset(cid_token)
        return ack

    async def _user_of(self, sid: str) -> str | None:
        try:
            session = await self.sio.get_session(sid)
        except KeyError:
            return None
        user_id = session.get("user_id") if isinstance(session, dict) else None
        if user_id in self.services.erased_users.users:  # erased while connected: nothing more
            return None
        return user_id if isinstance(user_id, str) else None

    async def _record_refusal(
        self, event: str, ctx: EventContext | None, user_id: str | None, cid: str, refusal: AckError
    ) -> None:
        try:
            await self.services.bus.publish_rejection(
                command_id=(ctx.command_id if ctx else None) or str(uuid.uuid4()),
                command_type=event,
                aggregate_id=ctx.aggregate_id if ctx else None,
                actor_id=user_id,
                correlation_id=cid,
                code=refusal.code,
                message=refusal.message,
            )
        except Exception:  # the trail record is best effort; the client already has its answer
            log.warning("recording the refusal of %s failed", event, exc_info=True)

    def _observe(self, event: str, kind: EventKind, sid: str, user_id: str | None, ack: Ack, seconds: float) -> None:
        code = "ok" if ack["ok"] else str(ack["error"]["code"])
        label = event if kind != "unknown" else "unknown"
        metrics = self.services.metrics
        metrics.socket_events.labels(event=label, code=code).inc()
        if kind == "command":
            metrics.observe_command(event, code, seconds)
        log.info(
            "socket %s %s %s %.1fms",
            kind,
            label if kind != "unknown" else f"unknown({event[:64]!r})",
            code,
            seconds * 1000,
            extra={"sid": sid, "user_id": user_id, "code": code, "latency_ms": round(seconds * 1000, 2)},
        )
