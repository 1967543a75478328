-- Take a tenant's lock, and read what the section needs, in one round trip.
--
-- KEYS: 1 lock, 2 generation, 3 directory of the snapshot prefix (any key when no
-- snapshot is asked for), then ARGV[5] keys to read, then the snapshot's keys.
-- ARGV: 1 token, 2 TTL in ms,
--       3 snapshot: '-' none, '*' always, '=<generation>' unless the tenant is at it,
--       4 snapshot prefix, 5 how many keys to read.
-- Returns false if the lock is held, else {generation ('' if none yet), snapshot
-- taken (0/1), values of the keys to read..., [values of the snapshot keys..., then
-- the names under the prefix that are not among the snapshot keys]}. Those names are
-- not read here (a script may touch only the keys it declares): the caller, still
-- holding the lock, reads them next.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local generation = redis.call('GET', KEYS[2]) or ''
local out = {generation, 0}
local reads = tonumber(ARGV[5])
for i = 4, 3 + reads do
  out[#out + 1] = redis.call('GET', KEYS[i])
end
local wanted = ARGV[3]
if wanted == '*' or (wanted ~= '-' and string.sub(wanted, 2) ~= generation) then
  out[2] = 1
  local declared = {}
  for i = 4 + reads, #KEYS do
    out[#out + 1] = redis.call('GET', KEYS[i])
    declared[KEYS[i]] = true
  end
  local prefix = ARGV[4]
  for _, name in ipairs(redis.call('ZRANGEBYLEX', KEYS[3], '[' .. prefix, '(' .. prefix .. '\255')) do
    if not declared[name] then
      out[#out + 1] = name
    end
  end
end
return out
