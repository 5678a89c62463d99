"""The one Lua script of the service: a fenced, atomic batch commit.

The script checks that the partition's meta fields still hold what the batch read
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

# Lua's unpack() is limited by the C stack (8000 slots in Redis): split longer commands.
MAX_ARGS_PER_CALL = 4000
