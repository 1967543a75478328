-- An optimistic commit: apply a batch of writes without taking the lock, in one round
-- trip, only if nothing the batch was decided on can have changed since: the tenant is
-- still at the generation the writer's cache was taken at, nobody holds the lock (a
-- holder never sees another writer's commit inside its section), and the keys the
-- batch assumed absent (an id it creates) are absent and those it assumed present (a
-- memory it links to) are present. Otherwise nothing is written and the writer falls
-- back to the lock.
--
-- KEYS[1] lock, KEYS[2] generation, then ARGV[3] keys assumed absent, then ARGV[4]
-- keys assumed present, then the writes (writes.lua).
-- ARGV[1] expected generation, ARGV[2] new generation, ARGV[3] and ARGV[4] the counts
-- above, then the writes from ARGV[5].
-- Returns {value of the last INCRBY, or false}; refusals are 'REFUSED <why>' errors.
-- With no writes, it only checks (a batch whose every request was refused decided
-- that on its assumptions too).
--@include writes
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('REFUSED locked')
end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then
  return redis.error_reply('REFUSED moved')
end
local absent, present = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 3, 2 + absent do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return redis.error_reply('REFUSED assumed')
  end
end
for i = 3 + absent, 2 + absent + present do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    return redis.error_reply('REFUSED assumed')
  end
end
local k = 2 + absent + present
local refused = check_counters(k, 4)
if refused then
  return refused
end
if #ARGV == 4 then
  return {false}  -- nothing to write: the assumptions held, the generation stays
end
local last = apply_writes(k, 4)
redis.call('SET', KEYS[2], ARGV[2])
return {last}
