"""Rate limits: the in-memory limiter against the contract, GCRA arithmetic on a fake clock, the
operation classes, the guard, the settings shape, and the Redis adapter failing open."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from api.metrics import GatewayMetrics
from api.rate_limits import RateLimited, RateLimitGuard, socket_operation, subject_key
from infra.rate_limit import InMemoryRateLimiter, RedisRateLimiter
from infra.settings import RateLimit, RateLimits, Settings
from tests.contracts.rate_limiter import RateLimiterContract


class TestInMemoryRateLimiter(RateLimiterContract):
    @pytest.fixture
    def limiter(self) -> InMemoryRateLimiter:
        return InMemoryRateLimiter()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_gcra_earns_one_call_back_every_period_over_limit() -> None:
    clock = Clock()
    limiter = InMemoryRateLimiter(clock)
    limit = RateLimit(limit=10, period_s=60)  # one call every 6 s after a burst of 10
    assert all([(await limiter.hit("k", limit)).allowed for _ in range(10)])
    refused = await limiter.hit("k", limit)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(6.0)
    clock.now += 5.9
    assert not (await limiter.hit("k", limit)).allowed
    clock.now += 0.1
    assert (await limiter.hit("k", limit)).allowed
    assert (await limiter.hit("k", limit)).retry_after_s == pytest.approx(6.0)


async def test_thirty_wrong_passwords_in_a_row_hit_the_default_login_limit() -> None:
    clock = Clock()
    guard = RateLimitGuard(InMemoryRateLimiter(clock), RateLimits(), GatewayMetrics())
    refused = 0
    for _ in range(30):
        clock.now += 1.0  # one attempt a second, as fast as a patient attacker
        try:
            await guard.check("login_username", "alice")
        except RateLimited:
            refused += 1
    assert refused > 0


@pytest.mark.parametrize(
    ("event", "kind", "operation"),
    [
        ("message:send", "command", "command"),
        ("conversation:create", "command", "command"),
        ("message:history", "query", "query"),
        ("conversation:list", "query", "query"),
        ("search:messages", "query", "search"),
        ("media:request-upload", "command", "media"),
        ("media:get-download-url", "query", "media"),
        ("keys:bundle", "query", "keys"),
        ("keys:bundle", "command", "keys"),
        ("keys:publish", "command", "keys"),
        ("keys:replenish", "command", "keys"),
        ("keys:devices", "query", "keys"),
        ("typing", "ephemeral", "typing"),
        ("no:such-event", "unknown", "query"),
    ],
)
def test_socket_events_are_counted_by_class(event: str, kind: str, operation: str) -> None:
    assert socket_operation(event, kind) == operation


def test_keys_hold_no_subject_in_clear() -> None:
    key = subject_key("login_username", "alice")
    assert key.startswith("login_username:") and "alice" not in key
    assert key != subject_key("login_address", "alice") != subject_key("login_username", "bob")


async def test_the_guard_counts_limited_calls_by_operation() -> None:
    limits = RateLimits(search=RateLimit(limit=1, period_s=60))
    metrics = GatewayMetrics()
    guard = RateLimitGuard(InMemoryRateLimiter(), limits, metrics)
    await guard.check("search", "user-1")
    await guard.check("search", "user-2")
    with pytest.raises(RateLimited) as raised:
        await guard.check("search", "user-1")
    assert raised.value.operation == "search" and 0 < raised.value.retry_after_s <= 60
    assert 'parley_gateway_rate_limited_total{operation="search"} 1.0' in metrics.render().decode()


async def test_a_disabled_guard_allows_everything() -> None:
    guard = RateLimitGuard(
        InMemoryRateLimiter(), RateLimits(enabled=False, search=RateLimit(limit=1, period_s=60)), GatewayMetrics()
    )
    for _ in range(5):
        await guard.check("search", "user-1")


def test_limits_are_set_from_one_json_env_var_and_the_rest_keep_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARLEY_RATE_LIMITS", '{"login_username": {"limit": 3, "period_s": 5}}')
    limits = Settings().rate_limits
    assert limits.login_username == RateLimit(limit=3, period_s=5)
    assert limits.command == RateLimits().command
    monkeypatch.setenv("PARLEY_RATE_LIMITS", '{"no_such_class": {"limit": 3, "period_s": 5}}')
    with pytest.raises(ValueError):
        Settings()


async def test_the_redis_limiter_fails_open_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    redis = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        limiter = RedisRateLimiter(redis, "test", timeout_s=0.2)
        with caplog.at_level(logging.WARNING, logger="parley.rate_limit"):
            decisions = [await limiter.hit("k", RateLimit(limit=1, period_s=60)) for _ in range(3)]
    finally:
        await redis.aclose()
    assert all(d.allowed for d in decisions)
    warnings = [r for r in caplog.records if r.name == "parley.rate_limit"]
    assert len(warnings) == 1  # once per FAIL_OPEN_WARN_EVERY_S, not once per call
