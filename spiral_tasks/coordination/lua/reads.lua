-- What a locked section needs, read once its lock is taken, in the same round trip:
-- included by acquire.lua and by optimistic.lua (a refused commit that takes the lock).
--
-- `first`: the KEYS index of the first key to read; `reads` keys to read, then
-- `declared` snapshot keys; `directory`: the snapshot prefix's directory key.
-- `wanted`: '-' no snapshot, '*' always, '=<generation>' unless the tenant is at it.
-- Returns {generation ('' if none yet), snapshot taken (0/1), values of the keys to
-- read..., [values of the snapshot keys..., then the names under the prefix that are
-- not among the snapshot keys]}. Those names are not read here (a script may touch
-- only the keys it declares): the caller, still holding the lock, reads them next.
local function section_reads(generation_key, directory, first, reads, declared_count,
                             wanted, prefix)
  local generation = redis.call('GET', generation_key) or ''
  local out = {generation, 0}
  for i = first, first + reads - 1 do
    out[#out + 1] = redis.call('GET', KEYS[i])
  end
  if wanted == '*' or (wanted ~= '-' and string.sub(wanted, 2) ~= generation) then
    out[2] = 1
    local declared = {}
    for i = first + reads, first + reads + declared_count - 1 do
      out[#out + 1] = redis.call('GET', KEYS[i])
      declared[KEYS[i]] = true
    end
    for _, name in ipairs(redis.call('ZRANGEBYLEX', directory, '[' .. prefix, '(' .. prefix .. '\255')) do
      if not declared[name] then
        out[#out + 1] = name
      end
    end
  end
  return out
end
