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

-- Whether `text` is a step Redis takes (no leading zero, no "-0") of at most 18 digits,
-- as every backend refuses longer ones (`MAX_DELTA`).
local function addable(text)
  return text == '0' or string.match(text, '^%-?[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$') ~= nil
end

-- A counter as INCRBY reads it, in two parts exact in Lua's doubles (value =
-- hi * 1e9 + lo, 0 <= lo < 1e9), or nil if INCRBY refuses it (a leading zero, "-0",
-- more than 19 digits; the range is checked by `in_range`).
local BASE = 1000000000
local function normalised(hi, lo)
  local carry = math.floor(lo / BASE)
  return {hi + carry, lo - carry * BASE}
end
local function counter(text)
  if text ~= '0' and not string.match(text, '^%-?[1-9]%d*$') then
    return nil
  end
  local negative = string.sub(text, 1, 1) == '-'
  local digits = negative and string.sub(text, 2) or text
  if #digits > 19 then
    return nil
  end
  local hi, lo = 0, tonumber(digits)
  if #digits > 9 then
    hi, lo = tonumber(string.sub(digits, 1, #digits - 9)), tonumber(string.sub(digits, -9))
  end
  if negative then
    hi, lo = -hi, -lo
  end
  return normalised(hi, lo)
end

-- Whether a counter is inside the 64 bits INCRBY adds in:
-- -9223372036854775808 (hi -9223372037, lo 145224192) to 9223372036854775807.
local function in_range(c)
  return (c[1] < 9223372036 or (c[1] == 9223372036 and c[2] <= 854775807))
    and (c[1] > -9223372037 or (c[1] == -9223372037 and c[2] >= 145224192))
end

-- Refuse the whole batch before writing anything if an INCRBY would fail half-way:
-- each counter is followed through the batch (its puts, deletes and steps), so a
-- value put earlier in the batch, or steps adding up past 64 bits, are seen here.
local function check_counters(k, a)
  local known = {}  -- key -> its counter so far in the batch, or false: not one
  for i = 1, write_count(a) do
    local op = ARGV[a + 3 * i - 2]
    if op == 'S' or op == 'D' or op == 'I' then
      local key = KEYS[k + 2 * i - 1]
      if op == 'S' then
        known[key] = counter(ARGV[a + 3 * i - 1]) or false
      elseif op == 'D' then
        known[key] = {0, 0}
      else
        local current = known[key]
        if current == nil then
          local stored = redis.call('GET', key)
          current = {0, 0}
          if stored then
            current = counter(stored)
            if not current or not in_range(current) then
              current = false
            end
          end
        end
        if not current or not in_range(current) then
          return redis.error_reply('NOTINT ' .. key .. ' does not hold an integer counter')
        end
        local step = ARGV[a + 3 * i - 1]
        if not addable(step) then
          return redis.error_reply('OVERFLOW the increment of ' .. key .. ' is out of range')
        end
        local d = counter(step)
        local sum = normalised(current[1] + d[1], current[2] + d[2])
        if not in_range(sum) then
          return redis.error_reply('OVERFLOW counter ' .. key .. ' would leave 64 bits')
        end
        known[key] = sum
      end
    end
  end
  return nil
end

-- Returns the value the batch's last INCRBY left (as text past Lua's exact doubles), or
-- false.
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
      if last >= 2^53 or last <= -2^53 then
        last = redis.call('GET', key)  -- as a Lua number, its last digits were lost
      end
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
