-- An optimistic commit: apply a batch of writes without taking the lock, in one round
-- trip, only if nothing the batch was decided on can have changed since: the tenant is
-- still at the generation the writer's cache was taken at, nobody holds the lock (a
-- holder never sees another writer's commit inside its section), and the keys the
-- batch assumed absent (an id it creates) are absent and those it assumed present (a
-- memory it links to) are present. Otherwise nothing is written and the writer falls
-- back to the lock.
--
-- When the tenant moved and the lock is free, and a token is given, the refusal takes
-- the lock itself, as acquire.lua would (same SET NX PX, same token and TTL), and
-- reads what the locked section needs with the snapshot always taken: the writer goes
-- on under that lock without another round trip to take it.
--
-- KEYS: 1 lock, 2 generation, 3 directory of the snapshot prefix, then ARGV[8] keys
-- to read and ARGV[9] snapshot keys (both for a lock taken on refusal), then ARGV[3]
-- keys assumed absent, then ARGV[4] keys assumed present, then the writes (writes.lua).
-- ARGV: 1 expected generation, 2 new generation, 3 and 4 the counts above, 5 token
-- ('' takes no lock on refusal), 6 TTL in ms, 7 snapshot prefix, 8 and 9 the counts
-- above, then the writes from ARGV[10].
-- Returns {value of the last INCRBY, or false} on success; {'moved', what
-- section_reads (reads.lua) returns} when it refused and took the lock; other
-- refusals are 'REFUSED <why>' errors. With no writes, it only checks (a batch whose
-- every request was refused decided that on its assumptions too).
--@include writes
--@include reads
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('REFUSED locked')
end
local reads, declared = tonumber(ARGV[8]), tonumber(ARGV[9])
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then
  if ARGV[5] == '' then
    return redis.error_reply('REFUSED moved')
  end
  redis.call('SET', KEYS[1], ARGV[5], 'NX', 'PX', ARGV[6])
  return {'moved', section_reads(KEYS[2], KEYS[3], 4, reads, declared, '*', ARGV[7])}
end
local absent, present = tonumber(ARGV[3]), tonumber(ARGV[4])
local first = 4 + reads + declared
for i = first, first + absent - 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return redis.error_reply('REFUSED assumed')
  end
end
for i = first + absent, first + absent + present - 1 do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    return redis.error_reply('REFUSED assumed')
  end
end
local k = first + absent + present - 1
local refused = check_counters(k, 9)
if refused then
  return refused
end
if #ARGV == 9 then
  return {false}  -- nothing to write: the assumptions held, the generation stays
end
local last = apply_writes(k, 9)
redis.call('SET', KEYS[2], ARGV[2])
return {last}
