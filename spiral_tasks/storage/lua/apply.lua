-- Apply a batch of writes atomically (see writes.lua for how writes are passed).
-- Returns {value of the last INCRBY, or false}.
--@include writes
local refused = check_counters(0, 0)
if refused then
  return refused
end
return {apply_writes(0, 0)}
