"""Rate limiter adapters: GCRA in Redis (shared by every gateway process) and in memory (tests).

GCRA (the generic cell rate algorithm) keeps one number per key, the "theoretical arrival time"
(TAT). With ``T = period_s / limit`` a call at ``now`` is allowed when
``max(TAT, now) + T - now <= period_s``; it then sets ``TAT = max(TAT, now) + T``. That allows a
burst of ``limit`` calls, then one every ``T`` seconds, and a refused call changes nothing (so a
client hammering while limited does not extend its own wait). ``retry_after_s`` is exactly how
long until the next call would be allowed.

The Redis script takes the time from Redis itself (``TIME``), so gateways with skewed clocks
share one clock; the key expires when the bucket is full again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from infra.settings import RateLimit

log = logging.getLogger("parley.rate_limit")

# Fail open: when Redis cannot answer, the call is allowed and a warning logged (at most once per
# this many seconds), because refusing every event while Redis is down would turn a cache outage
# into a full outage. The socket layer needs Redis for pushes anyway.
FAIL_OPEN_WARN_EVERY_S = 10.0
# A check that takes longer fails open too: the client's retries with backoff would otherwise
# hold every event for seconds while Redis is unreachable.
REDIS_TIMEOUT_S = 0.5
FLOAT_SLACK_S = 1e-9  # the limit-th call of a burst must not be refused by a rounding error

# KEYS[1] the bucket; ARGV[1] emission interval T (ms), ARGV[2] period (ms). Returns
# {1, "0"} allowed or {0, "<ms until allowed>"} (a string: Lua numbers become integers in replies).
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - period - now
if wait > 0.000001 then
  return {0, tostring(wait)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return {1, '0'}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0  # 0 when allowed


class RedisRateLimiter:
    """GCRA over one Redis shared by every gateway; fails open (see ``FAIL_OPEN_WARN_EVERY_S``)."""

    def __init__(self, redis: Redis, key_prefix: str, timeout_s: float = REDIS_TIMEOUT_S) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self._prefix = key_prefix
        self._sha: str = redis.register_script(GCRA_LUA).sha
        self._last_warning = float("-inf")

    async def hit(self, key: str, limit: RateLimit) -> Decision:
        period_ms = limit.period_s * 1000.0
        args = (f"{self._prefix}:{key}", repr(period_ms / limit.limit), repr(period_ms))
        try:
            async with asyncio.timeout(self._timeout_s):
                allowed, wait_ms = await self._evalsha(args)
        except (RedisError, OSError, TimeoutError) as exc:
            now = time.monotonic()
            if now - self._last_warning >= FAIL_OPEN_WARN_EVERY_S:
                self._last_warning = now
                log.warning("rate limiter unavailable, allowing calls: %r", exc)
            return Decision(True)
        if int(allowed) == 1:
            return Decision(True)
        return Decision(False, max(float(wait_ms) / 1000.0, 0.001))

    async def _evalsha(self, args: tuple[str, str, str]) -> Any:
        """The script by its digest; loaded first if this Redis does not know it (restarted, flushed).

        Called directly rather than through redis-py's ``Script``, whose every call checks its client
        against ``Pipeline`` with an ``isinstance`` that costs more than the rest of the call here."""
        try:
            return await self._redis.evalsha(self._sha, 1, *args)
        except NoScriptError:
            await self._redis.script_load(GCRA_LUA)
            return await self._redis.evalsha(self._sha, 1, *args)


class InMemoryRateLimiter:
    """The same GCRA in one process's memory: the fake for unit tests (and nothing else, since
    several gateways would each keep their own counts)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}

    async def hit(self, key: str, limit: RateLimit) -> Decision:
        now = self._clock()
        interval = limit.period_s / limit.limit
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + interval
        wait = new_tat - limit.period_s - now
        if wait > FLOAT_SLACK_S:
            return Decision(False, wait)
        self._tat[key] = new_tat
        return Decision(True)
