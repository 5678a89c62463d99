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
                 SADD=true, EXPIRE=true, ZREMRANGEBYSCORE=true, HDEL=true,
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
local items = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYSCORE', 'REV', 'LIMIT', ARGV[3], ARGV[4],
                         'WITHSCORES')
local n = #items / 2
if n == 0 then return '[]' end
local members = {}
for i = 1, n do members[i] = items[2 * i - 1] end
local records = redis.call('HMGET', KEYS[2], unpack(members))
local out = {}
for i = 1, n do
  out[i] = '[' .. cjson.encode(members[i]) .. ',' .. items[2 * i] .. ',' .. (records[i] or 'null') .. ']'
end
return '[' .. table.concat(out, ',') .. ']'
"""
"""A chunk of an audience walk in one round trip and one reply: the members of an index in a
score range (descending), each with its score and its packed record, as one JSON text
`[[member, score, record], ...]` (one bulk string parses far faster than 3 × n replies).
Both keys carry the partition's tag, so under Redis Cluster it is one slot."""

# Lua's unpack() is limited by the C stack (8000 slots in Redis): split longer commands.
MAX_ARGS_PER_CALL = 4000
