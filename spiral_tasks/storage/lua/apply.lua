-- Apply a batch of writes atomically, keeping each key's directory entry in step.
-- Write i uses KEYS[2i-1] (its key) and KEYS[2i] (the directory: a sorted set of
-- key names, one per hash tag), and ARGV[3i-2 .. 3i] = op, a, b:
--   S key value      SET     + ZADD dir      D key        DEL + ZREM dir
--   I key delta      INCRBY  + ZADD dir      Z index score member  ZADD
--   R index member   ZREM
-- Counters are checked before anything is written: a batch that would fail
-- half-way (INCRBY on a non-integer) is refused whole.
-- Returns the value of the last INCRBY (or 0).
local n = #ARGV / 3
for i = 1, n do
  if ARGV[3 * i - 2] == 'I' then
    local current = redis.call('GET', KEYS[2 * i - 1])
    if current and not string.match(current, '^%-?%d+$') then
      return redis.error_reply('NOTINT ' .. KEYS[2 * i - 1] .. ' does not hold an integer counter')
    end
  end
end
local last = 0
for i = 1, n do
  local op, a, b = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local key, dir = KEYS[2 * i - 1], KEYS[2 * i]
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
  end
end
return last
