-- Take a lock and read the tenant's generation in one round trip.
-- KEYS[1] lock key, KEYS[2] generation key; ARGV[1] token, ARGV[2] TTL in ms.
-- Returns the generation (0 if never written) when the lock was taken, else false.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
return false
