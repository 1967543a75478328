-- Apply a batch of writes atomically, optionally fenced by a lock.
--
-- KEYS[1] lock key, KEYS[2] generation key; ARGV[1] lock token ('' = not fenced),
-- ARGV[2] expected generation ('' = do not check), ARGV[3] '1' to release the lock
-- after writing. Fenced, the batch is refused with LOCKLOST unless the lock still
-- holds our token (a holder whose lock expired can never write) and with STALE if
-- the generation moved; on success the generation is bumped.
--
-- Write i then uses KEYS[2i+1] (its key) and KEYS[2i+2] (the key's directory: a
-- sorted set of key names per hash tag), and ARGV[3i+1 .. 3i+3] = op, a, b:
--   S key value   SET + ZADD dir         D key        DEL + ZREM dir
--   I key delta   INCRBY + ZADD dir      Z index score member   ZADD
--   R index member   ZREM                P channel message      PUBLISH
-- Counters are checked before anything is written: a batch that would fail
-- half-way (INCRBY on a non-integer) is refused whole.
-- Returns {value of the last INCRBY or false, generation or false}.
local token, expected, release = ARGV[1], ARGV[2], ARGV[3]
if token ~= '' then
  if redis.call('GET', KEYS[1]) ~= token then
    return redis.error_reply('LOCKLOST ' .. KEYS[1] .. ' is no longer held by this writer')
  end
  if expected ~= '' and (redis.call('GET', KEYS[2]) or '0') ~= expected then
    return redis.error_reply('STALE ' .. KEYS[2] .. ' moved while the lock was held')
  end
end
local n = (#ARGV - 3) / 3
for i = 1, n do
  if ARGV[3 * i + 1] == 'I' then
    local current = redis.call('GET', KEYS[2 * i + 1])
    if current and not string.match(current, '^%-?%d+$') then
      return redis.error_reply('NOTINT ' .. KEYS[2 * i + 1] .. ' does not hold an integer counter')
    end
  end
end
local last = false
for i = 1, n do
  local op, a, b = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  local key, dir = KEYS[2 * i + 1], KEYS[2 * i + 2]
  if op == 'S' then
    redis.call('SET', key, a)
    redis.call('ZADD', dir, 0, key)
  elseif op == 'D' then
    redis.call('DEL', key)
    redis.call('ZREM', dir, key)
  elseif op == 'I' then
    last = redis.call('INCRBY', key, a)
    redis.call('ZADD', dir, 0, key)
  elseif op == 'Z' then
    redis.call('ZADD', key, a, b)
  elseif op == 'R' then
    redis.call('ZREM', key, a)
  elseif op == 'P' then
    redis.call('PUBLISH', a, b)
  end
end
local generation = false
if token ~= '' then
  generation = redis.call('INCR', KEYS[2])
  if release == '1' then
    redis.call('DEL', KEYS[1])
  end
end
return {last, generation}
