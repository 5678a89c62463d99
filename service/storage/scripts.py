"""The Lua scripts of the service: a fenced, atomic batch commit, and an audience read.

The commit script checks that the partition's meta fields still hold what the batch read
(owner generation, applied offset, sweep clock) and only then runs the batch's writes.
So a commit is all or nothing, a replay after a crash is recognised by its offset, and
a worker that lost its partition to another (a newer generation) cannot write.
"""

from __future__ import annotations

COMMIT = """
local meta = KEYS[1]
local nchecks = tonumber(ARGV[1])
local i = 2
for _ = 1, nchecks do
  local cur = redis.call('HGET', meta, ARGV[i])
  if not cur then cur = '' end
  if cur ~= ARGV[i + 1] then
    return {'CONFLICT', ARGV[i], cur}
  end
  i = i + 2
end
local allowed = {HSET=true, HINCRBY=true, HINCRBYFLOAT=true, ZADD=true, ZREM=true,
                 SADD=true, SREM=true, EXPIRE=true, ZREMRANGEBYSCORE=true, HDEL=true,
                 XADD=true}
local n = #ARGV
while i <= n do
  local cmd = ARGV[i]
  if not allowed[cmd] then return redis.error_reply('commit: command not allowed: ' .. cmd) end
  local key = KEYS[tonumber(ARGV[i + 1])]
  local nargs = tonumber(ARGV[i + 2])
  redis.call(cmd, key, unpack(ARGV, i + 3, i + 2 + nargs))
  i = i + 3 + nargs
end
return {'OK'}
"""

AUDIENCE_CHUNK = """
local key = KEYS[1]
local hi, lo, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function before(a, b)  -- a < b as bytes (Lua's < follows the locale's collation)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local start = redis.call('ZCOUNT', key, '(' .. ARGV[1], '+inf')
if ARGV[4] == '1' then  -- after (hi, member): binary search among the members scored hi
  local member = ARGV[5]
  local b = start + redis.call('ZCOUNT', key, ARGV[1], ARGV[1])
  while start < b do
    local mid = math.floor((start + b) / 2)
    if before(redis.call('ZRANGE', key, mid, mid, 'REV')[1], member) then b = mid else start = mid + 1 end
  end
end
local items = redis.call('ZRANGE', key, start, start + count - 1, 'REV', 'WITHSCORES')
local members, scores = {}, {}
for i = 1, #items / 2 do
  local score = items[2 * i]
  if tonumber(score) < lo then break end
  members[i], scores[i] = items[2 * i - 1], score
end
local n = #members
if n == 0 then return '[]' end
local records = redis.call('HMGET', KEYS[2], unpack(members))
local out = {}
for i = 1, n do
  out[i] = '[' .. cjson.encode(members[i]) .. ',' .. scores[i] .. ',' .. (records[i] or 'null') .. ']'
end
return '[' .. table.concat(out, ',') .. ']'
"""
"""A chunk of an audience walk in one round trip and one reply: up to `count` members of an
index (descending score, then member) with score in [lo, hi] — all of them, or only those
after `member` when ARGV[4] is 1 — each with its score and packed record, as one JSON text
`[[member, score, record], ...]` (one bulk string parses far faster than 3 × n replies).

The start is found by rank (a count above `hi`, then a binary search among the members
that share `hi`), never by skipping an offset: a chunk deep inside a million equal scores
costs what the first one costs. Both keys carry the partition's tag (one slot in a Cluster)."""

LEASE_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
"""Take a lease if nobody holds it, or extend it if this holder (ARGV[1]) already does: 1 when
the caller holds it afterwards, for ARGV[2] ms more."""

LEASE_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
"""Give a lease back, only if this holder still has it (a late release never frees another's)."""

# Lua's unpack() is limited by the C stack (8000 slots in Redis): split longer commands.
MAX_ARGS_PER_CALL = 4000
