-- A fenced commit: apply a batch of writes only while the lock still holds this
-- section's token (a holder whose lock expired can never write) and the tenant is at
-- the generation the section last saw; then set the new generation and, if asked,
-- release the lock, all in one atomic step.
--
-- KEYS[1] lock, KEYS[2] generation, then the writes (writes.lua) from KEYS[3].
-- ARGV[1] token, ARGV[2] expected generation ('' if none yet), ARGV[3] new
-- generation, ARGV[4] '1' to release the lock, then the writes from ARGV[5].
-- Returns {value of the last INCRBY, or false}.
--@include writes
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LOCKLOST ' .. KEYS[1] .. ' is no longer held by this writer')
end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then
  return redis.error_reply('STALE ' .. KEYS[2] .. ' moved while the lock was held')
end
local refused = check_counters(2, 4)
if refused then
  return refused
end
local last = apply_writes(2, 4)
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[1])
end
return {last}
