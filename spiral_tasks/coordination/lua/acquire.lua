-- Take a tenant's lock, and read what the section needs, in one round trip.
--
-- KEYS: 1 lock, 2 generation, 3 directory of the snapshot prefix (any key when no
-- snapshot is asked for), then ARGV[5] keys to read, then the snapshot's keys.
-- ARGV: 1 token, 2 TTL in ms,
--       3 snapshot: '-' none, '*' always, '=<generation>' unless the tenant is at it,
--       4 snapshot prefix, 5 how many keys to read.
-- Returns false if the lock is held, else what section_reads (reads.lua) returns.
--@include reads
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local reads = tonumber(ARGV[5])
return section_reads(KEYS[2], KEYS[3], 4, reads, #KEYS - 3 - reads, ARGV[3], ARGV[4])
