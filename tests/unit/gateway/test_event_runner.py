"""The event runner: every event ends in exactly one ack, and refusals leave a trail record."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from api.metrics import GatewayMetrics
from api.services import GatewayServices
from api.socket.acks import AckError
from api.socket.events import EventContext, EventRunner, Handler
from api.socket.packets import UndecodablePayload
from domain.errors import DomainError
from infra.kafka.command_bus import Unavailable
from infra.rate_limit import InMemoryRateLimiter
from infra.settings import RateLimit, RateLimits, Settings


class FakeSio:
    def __init__(self, sessions: dict[str, dict[str, Any]]) -> None:
        self.sessions = sessions
        self.handlers: dict[str, Any] = {}

    def on(self, event: str, handler: Any) -> None:
        self.handlers[event] = handler

    async def get_session(self, sid: str) -> dict[str, Any]:
        return self.sessions[sid]


@dataclass
class FakeBus:
    rejections: list[dict[str, Any]] = field(default_factory=list)

    async def publish_rejection(self, **fields: Any) -> None:
        self.rejections.append(fields)


@dataclass
class FakeServices:
    bus: FakeBus = field(default_factory=FakeBus)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    settings: Settings = field(default_factory=Settings)
    rate_limiter: InMemoryRateLimiter = field(default_factory=InMemoryRateLimiter)
    erased_users: ErasedSoFar = field(default_factory=lambda: ErasedSoFar(set()))


@dataclass
class ErasedSoFar:
    users: set[str]


def make_runner(limits: RateLimits | None = None) -> tuple[EventRunner, FakeSio, FakeServices]:
    sio = FakeSio({"sid-1": {"user_id": "user-1"}, "sid-2": {"user_id": "user-2"}, "anon": {}})
    services = FakeServices()
    if limits is not None:
        services.settings = Settings(rate_limits=limits)
    return EventRunner(cast(Any, sio), cast(GatewayServices, services)), sio, services


async def answer(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
    return {"echo": payload.get("x"), "user": ctx.user_id}


def raising(exc: BaseException) -> Handler:
    async def handler(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
        ctx.command_id = "11111111-1111-4111-8111-111111111111"
        ctx.aggregate_id = "conversation:x"
        raise exc

    return handler


async def test_success_ack_carries_data_and_the_clients_correlation_id() -> None:
    runner, sio, _ = make_runner()
    runner.on("thing:get", answer, kind="query")
    ack = await sio.handlers["thing:get"]("sid-1", {"x": 1, "correlation_id": "abc-1"})
    assert ack == {"ok": True, "data": {"echo": 1, "user": "user-1"}, "correlation_id": "abc-1"}


async def test_an_invalid_correlation_id_is_replaced() -> None:
    runner, _, _ = make_runner()
    ack = await runner.run("q", "sid-1", ({"correlation_id": "bad id!"},), answer, "query")
    assert ack["correlation_id"] != "bad id!"
    uuid.UUID(ack["correlation_id"])


@pytest.mark.parametrize("args", [(), ("text",), (None,), ([1, 2],), ({"a": 1}, {"b": 2}), (5,)])
async def test_anything_but_one_object_is_invalid(args: tuple[Any, ...]) -> None:
    runner, _, _ = make_runner()
    ack = await runner.run("q", "sid-1", args, answer, "query")
    assert ack["ok"] is False and ack["error"]["code"] == "invalid"


async def test_a_socket_without_a_user_is_unauthorized() -> None:
    runner, _, _ = make_runner()
    ack = await runner.run("q", "anon", ({},), answer, "query")
    assert ack["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (AckError("not_found", "conversation not found"), "not_found"),
        (DomainError("invalid", "body: too long"), "invalid"),
        (Unavailable("no outcome"), "unavailable"),
        (TimeoutError(), "unavailable"),
        (ServerSelectionTimeoutError("mongo down"), "unavailable"),
        (RuntimeError("boom"), "internal"),
        (KeyError("k"), "internal"),
    ],
)
async def test_failures_become_error_acks(exc: Exception, code: str) -> None:
    runner, _, _ = make_runner()
    ack = await runner.run("q", "sid-1", ({},), raising(exc), "query")
    assert ack["ok"] is False and ack["error"]["code"] == code
    assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]
    if code == "internal":
        assert "boom" not in ack["error"]["message"]  # no internals leak to clients


async def test_internal_errors_are_logged_with_the_correlation_id(caplog: pytest.LogCaptureFixture) -> None:
    runner, _, _ = make_runner()
    await runner.run("q", "sid-1", ({"correlation_id": "trace-me"},), raising(RuntimeError("boom")), "query")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors and errors[0].exc_info is not None


async def test_a_gateway_refusal_of_a_command_is_recorded_once() -> None:
    runner, _, services = make_runner()
    ack = await runner.run(
        "message:send", "sid-1", ({"correlation_id": "c-9"},), raising(AckError("invalid", "body: x")), "command"
    )
    assert ack["error"]["code"] == "invalid"
    assert services.bus.rejections == [
        {
            "command_id": "11111111-1111-4111-8111-111111111111",
            "command_type": "message:send",
            "aggregate_id": "conversation:x",
            "actor_id": "user-1",
            "correlation_id": "c-9",
            "code": "invalid",
            "message": "body: x",
        }
    ]


async def test_a_non_dict_command_is_recorded_with_a_fresh_command_id() -> None:
    runner, _, services = make_runner()
    await runner.run("message:send", "sid-1", ("nope",), answer, "command")
    (rejection,) = services.bus.rejections
    assert rejection["code"] == "invalid" and rejection["aggregate_id"] is None
    uuid.UUID(rejection["command_id"])


@pytest.mark.parametrize(
    "exc",
    [AckError("conflict", "expected version 1", stage="domain"), Unavailable("down"), RuntimeError("boom")],
)
async def test_domain_refusals_and_failures_are_not_recorded_by_the_gateway(exc: Exception) -> None:
    runner, _, services = make_runner()
    await runner.run("message:send", "sid-1", ({},), raising(exc), "command")
    assert services.bus.rejections == []


async def test_queries_are_not_recorded_as_rejections() -> None:
    runner, _, services = make_runner()
    await runner.run("message:history", "sid-1", ({},), raising(AckError("not_found", "nope")), "query")
    assert services.bus.rejections == []


async def test_metrics_count_events_and_commands() -> None:
    runner, _, services = make_runner()
    await runner.run("message:send", "sid-1", ({},), answer, "command")
    await runner.run("message:send", "sid-1", ("x",), answer, "command")
    await runner.run("some:junk", "sid-1", ({},), raising(AckError("invalid", "unknown event")), "unknown")
    text = services.metrics.render().decode()
    assert 'parley_gateway_commands_total{code="ok",type="message:send"} 1.0' in text
    assert 'parley_gateway_commands_total{code="invalid",type="message:send"} 1.0' in text
    assert 'parley_gateway_socket_events_total{code="invalid",event="unknown"} 1.0' in text
    assert "some:junk" not in text  # unknown names never become label values


async def test_cancellation_is_not_swallowed() -> None:
    runner, _, _ = make_runner()

    async def slow(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}

    task = asyncio.create_task(runner.run("q", "sid-1", ({},), slow, "query"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_event_over_its_limit_is_refused_with_retry_after_before_its_handler_runs() -> None:
    runner, _, services = make_runner(RateLimits(command=RateLimit(limit=2, period_s=60)))
    calls: list[str] = []

    async def counted(ctx: EventContext, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(ctx.user_id)
        return {}

    acks = [await runner.run("message:send", "sid-1", ({},), counted, "command") for _ in range(3)]
    assert [a["ok"] for a in acks] == [True, True, False]
    error = acks[2]["error"]
    assert error["code"] == "rate_limited" and 29 < error["retry_after"] <= 30
    assert calls == ["user-1", "user-1"]
    assert services.bus.rejections == []  # a flood must not become as many trail records
    text = services.metrics.render().decode()
    assert 'parley_gateway_rate_limited_total{operation="command"} 1.0' in text
    assert 'parley_gateway_socket_events_total{code="rate_limited",event="message:send"} 1.0' in text


async def test_limits_are_per_user_and_per_class() -> None:
    runner, _, _ = make_runner(RateLimits(command=RateLimit(limit=1, period_s=60)))
    assert (await runner.run("message:send", "sid-1", ({},), answer, "command"))["ok"]
    assert (await runner.run("message:edit", "sid-1", ({},), answer, "command"))["error"]["code"] == "rate_limited"
    assert (await runner.run("message:send", "sid-2", ({},), answer, "command"))["ok"]
    assert (await runner.run("message:history", "sid-1", ({},), answer, "query"))["ok"]


async def test_even_invalid_and_unknown_events_count() -> None:
    runner, _, _ = make_runner(RateLimits(query=RateLimit(limit=2, period_s=60)))
    refuse = raising(AckError("invalid", "unknown event"))
    codes = [(await runner.run("junk", "sid-1", ("x",), refuse, "unknown"))["error"]["code"] for _ in range(3)]
    assert codes == ["invalid", "invalid", "rate_limited"]


async def test_an_undecodable_payload_is_acked_invalid_with_its_reason() -> None:
    runner, _, _ = make_runner()
    ack = await runner.run(
        "message:send", "sid-1", (UndecodablePayload("payload nested too deeply"),), answer, "command"
    )
    assert ack["ok"] is False
    assert ack["error"] == {"code": "invalid", "message": "payload nested too deeply"}


async def test_a_user_erased_while_connected_is_refused_from_the_next_event() -> None:
    runner, sio, services = make_runner()
    runner.on("thing:get", answer, kind="query")
    assert (await sio.handlers["thing:get"]("sid-1", {"x": 1}))["ok"] is True
    services.erased_users.users.add("user-1")
    refused = await sio.handlers["thing:get"]("sid-1", {"x": 1})
    assert refused["ok"] is False and refused["error"]["code"] == "unauthorized"
    assert (await sio.handlers["thing:get"]("sid-2", {"x": 1}))["ok"] is True, "other users are untouched"
