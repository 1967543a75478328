-- Applying a batch of writes: included by apply.lua and by the coordinator's commit.lua.
--
-- The writes follow the script's own arguments: write i (1-based) uses
-- KEYS[k + 2i - 1] (its key), KEYS[k + 2i] (that key's directory: a sorted set of key
-- names per hash tag) and ARGV[a + 3i - 2 .. a + 3i] = op, x, y:
--   S key value    SET + ZADD dir        D key          DEL + ZREM dir
--   I key delta    INCRBY + ZADD dir     Z index score member   ZADD
--   R index member ZREM                  P channel message      PUBLISH (keys unused)
--   A log entry    XADD log * e entry    T log position         XTRIM log MINID next
-- A log is a stream whose ids Redis assigns (always increasing, so an XADD never
-- fails half-way through a batch); T removes every entry up to `position` included.
-- A key used only as a placeholder (P) is never touched.

local function write_count(a)
  return (#ARGV - a) / 3
end

-- Whether INCRBY takes `text` and adds any other such number without overflow: Redis
-- reads no leading zero, no "-0", nothing past 64 bits; at most 18 digits, two such
-- numbers add up well inside them.
local function addable(text)
  return text == '0' or string.match(text, '^%-?[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$') ~= nil
end

-- Refuse the whole batch before writing anything if an INCRBY would fail half-way.
local function check_counters(k, a)
  for i = 1, write_count(a) do
    if ARGV[a + 3 * i - 2] == 'I' then
      local key = KEYS[k + 2 * i - 1]
      local current = redis.call('GET', key)
      if current and not addable(current) then
        return redis.error_reply('NOTINT ' .. key .. ' does not hold an integer counter')
      end
      if not addable(ARGV[a + 3 * i - 1]) then
        return redis.error_reply('ERR the increment of ' .. key .. ' is out of range')
      end
    end
  end
  return nil
end

-- Returns the value the batch's last INCRBY left, or false.
local function apply_writes(k, a)
  local last = false
  for i = 1, write_count(a) do
    local op, x, y = ARGV[a + 3 * i - 2], ARGV[a + 3 * i - 1], ARGV[a + 3 * i]
    local key, dir = KEYS[k + 2 * i - 1], KEYS[k + 2 * i]
    if op == 'S' then
      redis.call('SET', key, x)
      redis.call('ZADD', dir, 0, key)
    elseif op == 'D' then
      redis.call('DEL', key)
      redis.call('ZREM', dir, key)
    elseif op == 'I' then
      last = redis.call('INCRBY', key, x)
      redis.call('ZADD', dir, 0, key)
    elseif op == 'Z' then
      redis.call('ZADD', key, x, y)
    elseif op == 'R' then
      redis.call('ZREM', key, x)
    elseif op == 'P' then
      redis.call('PUBLISH', x, y)
    elseif op == 'A' then
      redis.call('XADD', key, '*', 'e', x)
    elseif op == 'T' then
      local ms, n = string.match(x, '^(%d+)-(%d+)$')
      if ms then
        redis.call('XTRIM', key, 'MINID', ms .. '-' .. (tonumber(n) + 1))
      end
    end
  end
  return last
end
