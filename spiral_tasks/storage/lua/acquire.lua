-- Take a lock, and read what the section needs, in one round trip.
-- KEYS: 1 lock, 2 generation, 3 directory of the snapshot prefix, then the keys to
-- read (ARGV[5] of them), then the snapshot's keys.
-- ARGV: 1 token, 2 TTL in ms, 3 generation the caller's cache is at ('' = no
-- snapshot), 4 snapshot prefix, 5 how many keys to read.
-- Returns false if the lock is held, else {generation, snapshot taken (0/1), values
-- of the keys to read..., [values of the snapshot keys..., then name, value of each
-- key under the prefix...]}.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local generation = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {generation, 0}
local reads = tonumber(ARGV[5])
for i = 4, 3 + reads do
  out[#out + 1] = redis.call('GET', KEYS[i])
end
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= generation then
  out[2] = 1
  for i = 4 + reads, #KEYS do
    out[#out + 1] = redis.call('GET', KEYS[i])
  end
  local prefix = ARGV[4]
  -- the keys under the prefix share its hash tag, so its slot
  for _, name in ipairs(redis.call('ZRANGEBYLEX', KEYS[3], '[' .. prefix, '(' .. prefix .. '\255')) do
    out[#out + 1] = name
    out[#out + 1] = redis.call('GET', name)
  end
end
return out
