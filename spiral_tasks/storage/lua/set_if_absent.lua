-- Set KEYS[1] to ARGV[1] unless it exists (listing it in its directory KEYS[2]), and
-- return what it holds afterwards: whoever came first wins, everyone learns the winner.
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], 0, KEYS[1])
end
return redis.call('GET', KEYS[1])
