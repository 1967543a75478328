-- Apply a batch of writes atomically.
-- KEYS[i] is the key of write i; ARGV holds three fields per write: op, a, b.
--   S key value      SET       D key            DEL
--   I key delta      INCRBY    Z index score m  ZADD      R index m   ZREM
-- Counters are checked before anything is written: a batch that would fail
-- half-way (INCRBY on a non-integer) is refused whole.
local n = #KEYS
for i = 1, n do
  if ARGV[3 * i - 2] == 'I' then
    local current = redis.call('GET', KEYS[i])
    if current and not string.match(current, '^%-?%d+$') then
      return redis.error_reply('NOTINT ' .. KEYS[i] .. ' does not hold an integer counter')
    end
  end
end
for i = 1, n do
  local op, a, b = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  if op == 'S' then
    redis.call('SET', KEYS[i], a)
  elseif op == 'D' then
    redis.call('DEL', KEYS[i])
  elseif op == 'I' then
    redis.call('INCRBY', KEYS[i], a)
  elseif op == 'Z' then
    redis.call('ZADD', KEYS[i], a, b)
  elseif op == 'R' then
    redis.call('ZREM', KEYS[i], a)
  end
end
return n
