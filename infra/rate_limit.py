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

# One call checks a batch of buckets, in order (the same bucket may come twice): KEYS[i] the
# bucket, ARGV[2i-1] its emission interval T (ms), ARGV[2i] its period (ms). Returns, per key,
# 1, "0" allowed or 0, "<ms until allowed>" (a string: Lua numbers become integers in replies).
# The TAT is kept with every digit ('%.6f': Lua's tostring keeps 14, which rounds a time in ms
# to 0.1 ms), and a wait under 1 us counts as none (the rounding of times near 1.7e12 ms): the
# limit-th call of a burst decided in the same call as the first has no time passing to hide it.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - period - now
  if wait > 0.001 then
    out[2 * i - 1] = 0
    out[2 * i] = tostring(wait)
  else
    redis.call('SET', key, string.format('%.6f', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
    out[2 * i - 1] = 1
    out[2 * i] = '0'
  end
end
return out
"""
# The most buckets one call checks (the calls of one turn of the event loop go together).
MAX_BATCH = 256
# Checks waiting for their call: the script's arguments (bucket, interval, period) and the answer's future.
_Queued = list[tuple[tuple[str, str, str], asyncio.Future[tuple[Any, Any]]]]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0  # 0 when allowed


class RedisRateLimiter:
    """GCRA over one Redis shared by every gateway; fails open (see ``FAIL_OPEN_WARN_EVERY_S``).

    The checks asked for in one turn of the event loop go to Redis together, in one script call
    (at most ``MAX_BATCH``), in the order they were asked: under load, one round trip serves
    every event that arrived in the same read of the sockets. The buckets of a call must share a
    Redis node (one Redis; a cluster would need them in one hash slot)."""

    def __init__(self, redis: Redis, key_prefix: str, timeout_s: float = REDIS_TIMEOUT_S) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self._prefix = key_prefix
        self._sha: str = redis.register_script(GCRA_LUA).sha
        self._last_warning = float("-inf")
        self._queued: _Queued = []
        self._sending: set[asyncio.Task[None]] = set()

    async def hit(self, key: str, limit: RateLimit) -> Decision:
        period_ms = limit.period_s * 1000.0
        args = (f"{self._prefix}:{key}", repr(period_ms / limit.limit), repr(period_ms))
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Any, Any]] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._send_queued)
        self._queued.append((args, answer))
        try:
            async with asyncio.timeout(self._timeout_s):
                allowed, wait_ms = await answer
        except (RedisError, OSError, TimeoutError) as exc:
            now = time.monotonic()
            if now - self._last_warning >= FAIL_OPEN_WARN_EVERY_S:
                self._last_warning = now
                log.warning("rate limiter unavailable, allowing calls: %r", exc)
            return Decision(True)
        if int(allowed) == 1:
            return Decision(True)
        return Decision(False, max(float(wait_ms) / 1000.0, 0.001))

    def _send_queued(self) -> None:
        task = asyncio.ensure_future(self._send_all(self._queued))
        self._queued = []
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_all(self, queued: _Queued) -> None:
        for start in range(0, len(queued), MAX_BATCH):  # one after the other: the order holds
            await self._send(queued[start : start + MAX_BATCH])

    async def _send(self, batch: _Queued) -> None:
        keys = [args[0] for args, _ in batch]
        argv = [value for args, _ in batch for value in args[1:]]
        try:
            async with asyncio.timeout(self._timeout_s):  # the callers have given up by then
                reply = await self._evalsha(keys, argv)
        except Exception as exc:
            for _, answer in batch:
                if not answer.done():  # a caller that timed out cancelled its answer
                    answer.set_exception(exc)
            return
        except BaseException:
            for _, answer in batch:
                answer.cancel()
            raise
        for i, (_, answer) in enumerate(batch):
            if not answer.done():
                answer.set_result((reply[2 * i], reply[2 * i + 1]))

    async def _evalsha(self, keys: list[str], argv: list[str]) -> Any:
        """The script by its digest; loaded first if this Redis does not know it (restarted, flushed).

        Called directly rather than through redis-py's ``Script``, whose every call checks its client
        against ``Pipeline`` with an ``isinstance`` that costs more than the rest of the call here."""
        try:
            return await self._redis.evalsha(self._sha, len(keys), *keys, *argv)
        except NoScriptError:
            await self._redis.script_load(GCRA_LUA)
            return await self._redis.evalsha(self._sha, len(keys), *keys, *argv)


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
