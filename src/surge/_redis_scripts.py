"""The Lua scripts `RedisStore` runs on the Redis server, one atomic step each.

Every script reads the time from Redis (`TIME`), never from the client, so processes on
machines with skewed clocks still agree. Every key a script writes gets an expiry, so a
namespace nobody uses any more disappears by itself. All keys of one namespace carry the
same hash tag (`surge:{namespace}:...`), so a namespace's keys stay on one cluster slot.

Concurrency keys (one pool per namespace and limit), in this order as KEYS:
  1 `...:n`  hash, process id -> places held
  2 `...:e`  sorted set, process id -> lease expiry (ms)
  3 `...:q`  sorted set, waiting process id -> ticket (FIFO order)
  4 `...:qe` sorted set, waiting process id -> expiry of its place in the queue (ms)
  5 `...:t`  the ticket counter
"""

from __future__ import annotations

__all__ = [
    "CONCURRENCY_ACQUIRE",
    "CONCURRENCY_LEAVE",
    "CONCURRENCY_RELEASE",
    "CONCURRENCY_RENEW",
    "COOLDOWN_READ",
    "RATE_ACQUIRE",
    "RATE_SETTLE",
]

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

CONCURRENCY_ACQUIRE = (
    _NOW_MS
    + """
-- ARGV: process id, limit, places wanted, lease (ms), key expiry (ms), places this
-- process took on its own while Redis was unreachable (now counted here)
local pid, limit, want = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lease, ttl, adopt = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
-- Processes whose lease lapsed (killed, frozen, cut off) give their places back.
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, p in ipairs(dead) do redis.call('HDEL', KEYS[1], p) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, p in ipairs(gone) do redis.call('ZREM', KEYS[3], p) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now) end
if adopt > 0 then
  redis.call('HINCRBY', KEYS[1], pid, adopt)
  redis.call('ZADD', KEYS[2], now + lease, pid)
end
local used = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do used = used + tonumber(v) end
-- Each process queued ahead of this one keeps one free place for itself.
local queued = redis.call('ZCARD', KEYS[3])
local ahead = redis.call('ZRANK', KEYS[3], pid)
local others = queued
if ahead then others = queued - 1 else ahead = queued end
local granted = math.max(0, math.min(want, limit - used - ahead))
-- While others wait, one grant takes at most an even share of what is free: places
-- freed together (a wave of answers) are split, not taken by whoever asks first.
if others > 0 then
  granted = math.min(granted, math.max(1, math.floor((limit - used) / (others + 1))))
end
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], pid, granted)
  redis.call('ZADD', KEYS[2], now + lease, pid)
  redis.call('ZREM', KEYS[3], pid)
  redis.call('ZREM', KEYS[4], pid)
end
if granted < want then
  -- Still waiting: keep the place in the queue, or go to its back after a grant,
  -- so that processes take turns.
  if granted > 0 or not redis.call('ZSCORE', KEYS[3], pid) then
    redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), pid)
  end
  redis.call('ZADD', KEYS[4], now + lease, pid)
end
for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ttl) end
return {granted, used + granted}
"""
)

CONCURRENCY_RELEASE = """
-- KEYS: n, e. ARGV: process id, places given back
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return left
"""

CONCURRENCY_RENEW = (
    _NOW_MS
    + """
-- KEYS: n, e. ARGV: process id, places held, lease (ms), key expiry (ms), resync (0/1)
local pid, held = ARGV[1], tonumber(ARGV[2])
local lease, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local known = redis.call('HGET', KEYS[1], pid)
local rewritten = 0
if held <= 0 then
  redis.call('HDEL', KEYS[1], pid)
  redis.call('ZREM', KEYS[2], pid)
  return 0
end
if (not known) or ARGV[5] == '1' then
  -- Redis lost the entry (restart, lapsed lease) or a release did not arrive: say again
  -- what this process holds.
  redis.call('HSET', KEYS[1], pid, held)
  rewritten = 1
end
redis.call('ZADD', KEYS[2], now + lease, pid)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return rewritten
"""
)

CONCURRENCY_LEAVE = """
-- KEYS: n, e, q, qe. ARGV: process id. A process with no waiters left leaves the queue.
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""

_NOW_S = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function num(field)
  local v = redis.call('HGET', KEYS[1], field)
  if v then return tonumber(v) end
  return 0
end
local nr, nt = num('nr'), num('nt')
local function store()
  redis.call('HSET', KEYS[1], 'nr', tostring(nr), 'nt', tostring(nt))
  local horizon = math.max(nr, nt, num('hru'), num('htu')) - now
  redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(horizon, 0) + 60) * 1000))
end
"""

RATE_ACQUIRE = (
    _NOW_S
    + """
-- KEYS: the endpoint's hash. ARGV: seconds per request, seconds per token, this request's
-- estimated tokens, tokens to correct earlier estimates by (used - estimated).
local per_request, per_token = tonumber(ARGV[1]), tonumber(ARGV[2])
local cost, delta = tonumber(ARGV[3]), tonumber(ARGV[4])
if delta ~= 0 and per_token > 0 then nt = math.max(now, nt + delta * per_token) end
local start = math.max(now, nr, nt)
if start < num('hru') then per_request = math.max(per_request, num('hr')) end
if start < num('htu') then per_token = math.max(per_token, num('ht')) end
nr = start + per_request
nt = start + cost * per_token
store()
return math.floor((start - now) * 1000000)
"""
)

RATE_SETTLE = (
    _NOW_S
    + """
-- KEYS: the endpoint's hash. ARGV: seconds per token, tokens to correct by, the server's
-- Retry-After (s), request hint (s per request, s to reset), token hint (s per token,
-- s to reset), whether the tokens left are fewer than this request needs (0/1).
-- A negative value means the server did not say.
local per_token, delta, wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local req_per, req_reset = tonumber(ARGV[4]), tonumber(ARGV[5])
local tok_per, tok_reset, short = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
if delta ~= 0 and per_token > 0 then nt = math.max(now, nt + delta * per_token) end
if wait >= 0 then
  nr = math.max(nr, now + wait)
  nt = math.max(nt, now + wait)
end
if req_per >= 0 then
  redis.call('HSET', KEYS[1], 'hr', tostring(req_per), 'hru', tostring(now + req_reset))
  nr = math.max(nr, now + req_per)
end
if tok_per >= 0 then
  redis.call('HSET', KEYS[1], 'ht', tostring(tok_per), 'htu', tostring(now + tok_reset))
  if short == '1' then nt = math.max(nt, now + tok_reset) end
end
store()
return 1
"""
)

COOLDOWN_READ = """
-- KEYS: one cool-down key per endpoint. Returns the milliseconds each has left (0: none).
local out = {}
for i, key in ipairs(KEYS) do
  local left = redis.call('PTTL', key)
  if left < 0 then left = 0 end
  out[i] = left
end
return out
"""
