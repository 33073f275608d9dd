"""The Redis limiter: every gateway process enforces the same limits through Lua scripts.

One ``EVALSHA`` per call, pipelined on one connection (``limits.resp``): ``acquire`` checks and charges every scope, the quota and the
balance atomically (all-or-nothing), ``settle`` and ``credit`` are one script each. Time
is the Redis server's (``TIME``, in microseconds), so processes on hosts whose clocks
disagree still share one window.

Keys (``p`` is the prefix):

* ``p win:<scope>``  sorted set, one member ``<admission µs, 16 digits>:<lease id>:<tokens>``
  per admission in the window, scored by its admission time, and the member ``#`` scored by
  minus the tokens of the others (so it sorts first and the sum lives and expires with
  them). Expires one window (+1 s) after the last admission. Entries that left the window
  are removed by the next admission.
* ``p inf:<scope>``  sorted set of the leases in flight, scored by their deadline
  (admission + ``lease_ttl``); expired leases are purged on acquire, so a crashed
  process cannot hold a slot for longer than ``lease_ttl``.
* ``p <quota name>`` the tokens used in the quota period; expires a day after it ends.
* ``p bal:<account>`` the balance in nanos; never expires (it is authoritative).
* ``p cred:<account>`` / ``p credfloor:<account>`` the applied credit ids (the newest
  1024) and the floor: ids at or below it count as applied (the highest id forgotten, or
  the newest credit a seed included).
* ``p credpend:<account>`` hash, credit id -> nanos: credits that came while ``bal:`` was
  absent, for the seed to add (those newer than the seed's credit id); deleted by the seed,
  expires ``PENDING_CREDIT_TTL`` after its newest credit was made.

The scripts take every key in ``KEYS``, but the keys of one admission are not in one
hash slot: Redis Cluster is not supported. They need Redis 6.2 or newer (``SET ... PXAT``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from claudestore.limits.base import PENDING_CREDIT_TTL, Admission, Lease, Quota, Scope, Window
from claudestore.limits.memory import CREDIT_IDS_KEPT, QUOTA_GRACE, refusal
from claudestore.limits.resp import Arg, NoScriptError, RespClient, command_head, tail

log = logging.getLogger("claudestore.limits")

# Redis 7.0 spends more on a number converted to text (printf "%.17g": a Lua number passed to
# redis.call, a score in a reply) than on the call itself: the scripts pass texts (TIME's, ARGV's,
# string.format('%d')), read admission times out of the members and scores only of '#'.
# KEYS: win, inf per scope, then the quota counter, the balance counter, its pending credits and
# its credit floor.
# ARGV: first what is the same for every admission of one policy (sent pre-encoded): window µs,
# lease ttl µs, scope count, (rpm, tpm, concurrency) per scope ("" = none), quota limit ("" =
# none), quota seed, quota expiry (unix ms), balance seed ("" = balance not enforced), the newest
# credit id the seed includes; then the admission's own: lease id, tokens, cost.
# Returns {1, now, rpm limit, remaining, reset, tpm limit, remaining, reset} (limit -1 = none)
# or {0, kind, scope index, limit, wait µs, current value, now}.
ACQUIRE = """
local t = redis.call('TIME')
local now_s = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local now = tonumber(now_s)
local window, ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = 3 + 3 * n
local qlimit, qseed, qexpiry, bseed = tonumber(ARGV[b + 1]), ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
local since, lease, tokens_text, cost_text = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
local tokens = tonumber(tokens_text)
local qkey, bkey = KEYS[2 * n + 1], KEYS[2 * n + 2]
local HEAD = 9  -- members read at once from the front of a log ('#' and 8 entries)
local function toks(member) return tonumber(string.match(member, ':(%d+)$')) end
local function at(member) return tonumber(string.sub(member, 1, 16)) end
local rpms, tpms, concs = {}, {}, {}
for i = 1, n do
  local k = 3 * i
  rpms[i], tpms[i], concs[i] = tonumber(ARGV[k + 1]), tonumber(ARGV[k + 2]), tonumber(ARGV[k + 3])
  if tpms[i] and tokens > tpms[i] then return {0, 1, i, tpms[i], 0, 0, now} end
end
local bal, pend
if bseed ~= '' then
  bal = redis.call('GET', bkey)
  local have = tonumber(bal or bseed)
  if not bal then  -- to be seeded: with the credits that came before it and it does not include
    pend = redis.call('HGETALL', KEYS[2 * n + 3])
    for j = 1, #pend, 2 do
      if tonumber(pend[j]) > tonumber(since) then have = have + tonumber(pend[j + 1]) end
    end
  end
  if have < tonumber(cost_text) then return {0, 2, 0, 0, 0, have, now} end
end
local used
if qlimit then
  used = redis.call('GET', qkey)
  local u = tonumber(used or qseed)
  if u + tokens > qlimit then return {0, 3, 0, qlimit, 0, u, now} end
end
local cut = string.format('%016d', now - window)
-- per scope: live entries, their tokens, rank of the first entry, expired entries, oldest live time
local count, sum, first, gone, oldest = {}, {}, {}, {}, {}
for i = 1, n do
  local rpm, tpm, conc = rpms[i], tpms[i], concs[i]
  local win, inf = KEYS[2 * i - 1], KEYS[2 * i]
  if rpm or tpm then
    local head = redis.call('ZRANGE', win, 0, HEAD - 1)
    local total, f, j = 0, 0, 1
    if head[1] == '#' then total, f, j = -tonumber(redis.call('ZSCORE', win, '#')), 1, 2 end
    local s, g = total, 0
    while head[j] and string.sub(head[j], 1, 16) <= cut do
      s, g, j = s - toks(head[j]), g + 1, j + 1
    end
    local o = head[j]
    if not o and #head == HEAD then  -- every entry fetched has expired: there may be more
      local old = redis.call('ZRANGEBYSCORE', win, '(0', cut)
      s, g = total, #old
      for _, m in ipairs(old) do s = s - toks(m) end
      o = redis.call('ZRANGE', win, f + g, f + g)[1]
    end
    local c = redis.call('ZCARD', win) - f - g
    if rpm and c >= rpm then
      local wait = window
      if rpm > 0 then wait = at(redis.call('ZRANGE', win, f + g + c - rpm, f + g + c - rpm)[1]) + window - now end
      return {0, 4, i, rpm, wait, c, now}
    end
    if tpm and s + tokens > tpm then
      local live = redis.call('ZRANGE', win, f + g, -1)
      local need, wait = s + tokens - tpm, window
      for _, m in ipairs(live) do
        need = need - toks(m)
        if need <= 0 then wait = at(m) + window - now break end
      end
      return {0, 5, i, tpm, wait, s, now}
    end
    count[i], sum[i], first[i], gone[i], oldest[i] = c, s, f, g, o and at(o) or now
  end
  if conc then
    local busy = redis.call('ZCARD', inf)
    if busy >= conc then
      redis.call('ZREMRANGEBYSCORE', inf, '-inf', now_s)
      busy = redis.call('ZCARD', inf)
      if busy >= conc then return {0, 6, i, conc, 1000000, busy, now} end
    end
  end
end
local member = now_s .. ':' .. lease .. ':' .. tokens_text
local win_ms = string.format('%d', math.ceil(window / 1000) + 1000)
local inf_ms = string.format('%d', math.ceil(ttl / 1000) + 1000)
local deadline = string.format('%d', now + ttl)
local r, tk = {-1, 0, 0}, {-1, 0, 0}
for i = 1, n do
  local rpm, tpm, conc = rpms[i], tpms[i], concs[i]
  local win, inf = KEYS[2 * i - 1], KEYS[2 * i]
  if rpm or tpm then
    if gone[i] > 0 then redis.call('ZREMRANGEBYRANK', win, first[i], first[i] + gone[i] - 1) end
    local s = sum[i] + tokens
    redis.call('ZADD', win, now_s, member, string.format('%d', -math.max(s, 0)), '#')
    redis.call('PEXPIRE', win, win_ms)
    local reset = oldest[i] + window
    if rpm then
      local rem = rpm - count[i] - 1
      if r[1] < 0 or rem < r[2] then r = {rpm, rem, reset} end
    end
    if tpm and (tk[1] < 0 or tpm - s < tk[2]) then tk = {tpm, tpm - s, reset} end
  end
  if conc then
    redis.call('ZADD', inf, deadline, lease)
    redis.call('PEXPIRE', inf, inf_ms)
  end
end
if qlimit then
  if not used then redis.call('SET', qkey, qseed, 'PXAT', qexpiry) end
  redis.call('INCRBY', qkey, tokens_text)
end
if bseed ~= '' then
  if not bal then  -- seeded: every credit up to since, and those added, count as applied
    redis.call('SET', bkey, bseed)
    for j = 1, #pend, 2 do
      if tonumber(pend[j]) > tonumber(since) then redis.call('INCRBY', bkey, pend[j + 1]) end
    end
    if #pend > 0 then redis.call('DEL', KEYS[2 * n + 3]) end
    if since ~= '0' then
      local floor = redis.call('GET', KEYS[2 * n + 4])
      if not floor or tonumber(floor) < tonumber(since) then redis.call('SET', KEYS[2 * n + 4], since) end
    end
  end
  redis.call('DECRBY', bkey, cost_text)
end
return {1, now, r[1], r[2], r[3], tk[1], tk[2], tk[3]}
"""

# KEYS as for ACQUIRE. ARGV: scope count, "1" if the quota is charged (both pre-encoded); lease
# id, admission µs (16 digits, as in the member), reserved tokens, actual tokens, token delta,
# balance give-back ("" = balance not enforced). An entry that has left the window is not
# re-counted (ZREM finds nothing).
SETTLE = """
local n = tonumber(ARGV[1])
local lease, at, delta = ARGV[3], ARGV[4], ARGV[7]
local old, new = at .. ':' .. lease .. ':' .. ARGV[5], at .. ':' .. lease .. ':' .. ARGV[6]
local back = string.sub(delta, 1, 1) == '-' and string.sub(delta, 2) or '-' .. delta
for i = 1, n do
  if old ~= new and redis.call('ZREM', KEYS[2 * i - 1], old) == 1 then
    redis.call('ZADD', KEYS[2 * i - 1], at, new)
    redis.call('ZINCRBY', KEYS[2 * i - 1], back, '#')
  end
  redis.call('ZREM', KEYS[2 * i], lease)
end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2 * n + 1]) == 1 then
  redis.call('INCRBY', KEYS[2 * n + 1], delta)
end
if ARGV[8] ~= '' and redis.call('EXISTS', KEYS[2 * n + 2]) == 1 then
  redis.call('INCRBY', KEYS[2 * n + 2], ARGV[8])
end
return 1
"""

# KEYS: balance, applied ids, floor, pending credits. ARGV: nanos, credit id, ids kept, how long
# to keep it pending in ms ("" = not at all: too old for any seed in use not to include it).
CREDIT = """
local floor = redis.call('GET', KEYS[3])
if (floor and tonumber(ARGV[2]) <= tonumber(floor)) or redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[2])
if redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not floor or tonumber(oldest) > tonumber(floor) then redis.call('SET', KEYS[3], oldest) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, 0)
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], ARGV[1])
  return 1
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
  if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[4], ARGV[4]) end
end
return 0
"""

_SCRIPTS = {"acquire": ACQUIRE, "settle": SETTLE, "credit": CREDIT}


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


SHAPES_KEPT = 4096  # admission shapes (one per policy, in effect) whose keys are kept encoded


@dataclass(slots=True, eq=False)
class _Shape:
    """The Redis keys of one policy's admissions and the arguments its scripts get on every call
    (the policy's limits), with each EVALSHA command encoded once up to the arguments of one
    call (sha, key count, keys, those arguments): per call only a few short texts are encoded."""

    scopes: tuple[Scope, ...]  # the policy's own tuple: held, so its id names this shape only
    keys: list[str]
    settle_fixed: list[Arg]
    acquire_fixed: list[Arg] = field(default_factory=list)
    acquire_for: tuple[Quota | None, int | None, int] | None = None  # (quota, seed, its credit id)
    heads: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # script -> (sha, head)

    def head(self, name: str, sha: str, fixed: list[Arg], trailing: int) -> bytes:
        entry = self.heads.get(name)
        if entry is None or entry[0] != sha:
            args = ("EVALSHA", sha, len(self.keys), *self.keys, *fixed)
            entry = self.heads[name] = (sha, command_head(args, trailing))
        return entry[1]


class RedisLimiter:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "cs:",
        window: float = 60.0,
        lease_ttl: float = 900.0,
        timeout: float = 5.0,
    ) -> None:
        self.prefix = prefix
        self.window = window
        self.lease_ttl = lease_ttl
        self._client = RespClient(url, timeout=timeout)
        self._shas: dict[str, str] = {}
        self._ids = count()
        self._tag = secrets.token_hex(4)
        self._reloads: set[asyncio.Task[None]] = set()
        self._shapes: dict[tuple[int, str | None, int | None], _Shape] = {}
        self._window_us = round(window * 1e6)
        self._lease_ttl_us = round(lease_ttl * 1e6)

    async def _run(self, name: str, keys: list[str], args: list[Arg]) -> Any:
        """EVALSHA the script, loading it first (and again after a NOSCRIPT, e.g. a restart)."""
        sha = self._shas.get(name)
        if sha is not None:
            try:
                return await self._client.call("EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:
                pass
        sha = self._shas[name] = (await self._client.call("SCRIPT", "LOAD", _SCRIPTS[name])).decode()
        return await self._client.call("EVALSHA", sha, len(keys), *keys, *args)

    async def _eval(self, name: str, shape: _Shape, fixed: list[Arg], own: tuple[str, ...]) -> Any:
        """:meth:`_run` with the shape's encoded head (the usual case: the script is loaded)."""
        sha = self._shas.get(name)
        if sha is not None:
            try:
                return await self._client.call_encoded(shape.head(name, sha, fixed, len(own)) + tail(own))
            except NoScriptError:
                pass
        return await self._run(name, shape.keys, [*fixed, *own])

    def _shape(self, admission: Admission) -> _Shape:
        quota = admission.quota
        key = (
            id(admission.scopes),
            quota.name if quota is not None else None,
            admission.account_id if admission.balance_seed is not None else None,
        )
        shape = self._shapes.get(key)
        if shape is None or shape.scopes is not admission.scopes:
            if len(self._shapes) >= SHAPES_KEPT:
                self._shapes.clear()
            settle_fixed: list[Arg] = [len(admission.scopes), "1" if quota is not None else ""]
            shape = self._shapes[key] = _Shape(admission.scopes, self._keys(admission), settle_fixed)
        return shape

    def _keys(self, admission: Admission) -> list[str]:
        p = self.prefix
        keys = [f"{p}{kind}:{s.name}" for s in admission.scopes for kind in ("win", "inf")]
        keys.append(f"{p}{admission.quota.name}" if admission.quota is not None else f"{p}-")
        if admission.balance_seed is not None:
            a = admission.account_id
            keys += [f"{p}bal:{a}", f"{p}credpend:{a}", f"{p}credfloor:{a}"]
        else:
            keys += [f"{p}-", f"{p}-", f"{p}-"]
        return keys

    def _acquire_fixed(self, shape: _Shape, admission: Admission) -> list[Arg]:
        """ACQUIRE's arguments before the admission's own: the policy's limits, quota and seed."""
        quota, seed, since = admission.quota, admission.balance_seed, admission.balance_credit_id
        made = shape.acquire_for
        if made is None or made[0] is not quota or made[1] != seed or made[2] != since:
            fixed: list[Arg] = [self._window_us, self._lease_ttl_us, len(admission.scopes)]
            for s in admission.scopes:
                fixed += [_opt(s.rpm), _opt(s.tpm), _opt(s.concurrency)]
            fixed += [
                _opt(quota.limit) if quota is not None else "",
                quota.used_seed if quota is not None else 0,
                round((quota.period_end + QUOTA_GRACE) * 1000) if quota is not None else 0,
                _opt(seed),
                since,
            ]
            shape.acquire_fixed, shape.acquire_for = fixed, (quota, seed, since)
            shape.heads.pop("acquire", None)
        return shape.acquire_fixed

    async def acquire(self, admission: Admission) -> Lease:
        if admission.balance_seed is not None and admission.account_id is None:
            raise ValueError("an admission with a balance_seed needs an account_id")
        lease_id = f"{self._tag}{next(self._ids)}"
        shape = self._shape(admission)
        fixed = self._acquire_fixed(shape, admission)
        own = (lease_id, str(admission.tokens), str(admission.cost_nanos))
        reply = await self._eval("acquire", shape, fixed, own)  # Lua numbers: integer replies, ints
        if reply[0] == 0:
            _, kind, index, limit, wait, current, now = reply
            scope = admission.scopes[index - 1] if index > 0 else None
            raise refusal(
                kind, admission, scope, limit, wait / 1e6, current, window=self.window, now=now / 1e6
            )
        _, now, rlimit, rrem, rreset, tlimit, trem, treset = reply
        return Lease(
            admission,
            requests=Window(rlimit, rrem, rreset / 1e6) if rlimit >= 0 else None,
            tokens=Window(tlimit, trem, treset / 1e6) if tlimit >= 0 else None,
            extra={"id": lease_id, "at": now},
        )

    @staticmethod
    def _settle_own(lease: Lease, actual_tokens: int, actual_cost_nanos: int) -> tuple[str, ...]:
        """SETTLE's arguments after the shape's: lease id, reserved, actual, delta, give-back."""
        admission = lease.admission
        return (
            str(lease.extra["id"]),
            f"{lease.extra['at']:016d}",
            str(admission.tokens),
            str(actual_tokens),
            str(actual_tokens - admission.tokens),
            str(admission.cost_nanos - actual_cost_nanos) if admission.balance_seed is not None else "",
        )

    async def settle(self, lease: Lease, actual_tokens: int, actual_cost_nanos: int) -> None:
        if lease.settled:
            return
        lease.settled = True
        shape = self._shape(lease.admission)
        try:
            await self._eval(
                "settle", shape, shape.settle_fixed, self._settle_own(lease, actual_tokens, actual_cost_nanos)
            )
        except Exception:
            lease.settled = False  # most likely not applied (e.g. no connection): the caller may retry
            raise

    def settle_now(self, lease: Lease, actual_tokens: int, actual_cost_nanos: int) -> bool:
        """:meth:`settle` without awaiting its reply: the script is sent on the open connection
        (with the next command, within 2 ms: the slot it frees is free that much later) and a
        failure is logged when the reply comes. False: not connected or the script not
        loaded yet, nothing was sent (await :meth:`settle`)."""
        if lease.settled:
            return True
        sha = self._shas.get("settle")
        if sha is None:
            return False
        shape = self._shape(lease.admission)
        own = self._settle_own(lease, actual_tokens, actual_cost_nanos)
        command = shape.head("settle", sha, shape.settle_fixed, len(own)) + tail(own)
        if not self._client.send(command, lambda reply: self._settled(reply, shape, own), lazy=True):
            return False
        lease.settled = True
        return True

    def _settled(self, reply: Any, shape: _Shape, own: tuple[str, ...]) -> None:
        if isinstance(reply, NoScriptError):  # the server lost its scripts: load and run it again
            args = [*shape.settle_fixed, *own]
            task = asyncio.get_running_loop().create_task(self._resettle(shape.keys, args))
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)
        elif isinstance(reply, Exception):
            log.error("settling a limiter lease failed (%s: %s)", reply.__class__.__name__, reply)

    async def _resettle(self, keys: list[str], args: list[Arg]) -> None:
        try:
            await self._run("settle", keys, args)
        except Exception as exc:
            log.error("settling a limiter lease failed (%s: %s)", exc.__class__.__name__, exc)

    async def credit(
        self, account_id: int, nanos: int, credit_id: int, created_at: float | None = None
    ) -> None:
        p, a = self.prefix, account_id
        keys = [f"{p}bal:{a}", f"{p}cred:{a}", f"{p}credfloor:{a}", f"{p}credpend:{a}"]
        keep = PENDING_CREDIT_TTL if created_at is None else created_at + PENDING_CREDIT_TTL - time.time()
        pending = str(math.ceil(keep * 1000)) if keep > 0 else ""
        await self._run("credit", keys, [str(nanos), str(credit_id), str(CREDIT_IDS_KEPT), pending])

    async def balance(self, account_id: int) -> int | None:
        value = await self._client.call("GET", f"{self.prefix}bal:{account_id}")
        return None if value is None else int(value)

    async def quota_used(self, name: str) -> int | None:
        value = await self._client.call("GET", f"{self.prefix}{name}")
        return None if value is None else int(value)

    async def ping(self) -> None:
        """Raise when Redis cannot be reached (readiness probe)."""
        await self._client.call("PING")

    async def close(self) -> None:
        """Close after the replies of every settlement sent (up to a few seconds)."""
        if self._reloads:
            await asyncio.wait(set(self._reloads), timeout=self._client.timeout)
        await self._client.drain(self._client.timeout)
        await self._client.close()
