-- Conditional write of window updates the caller computed itself (StreamInference), one or more
-- entities per call. The caller holds an entity's exact state from its previous call (WindowUpdate.lua
-- or this script) and the version token that call stored; it replays the batch's events over that
-- state with WindowEngine, as the stream always does, and sends the result. When the meta hash's v still
-- equals that token no one else wrote the entity since, so the result is written as sent and v becomes
-- the new token; otherwise nothing is written and the caller falls back to WindowUpdate.lua.
-- No parsing and no arithmetic here: the cost per entity is a handful of hash commands.
--
-- Per entity e, keys KEYS[k+1] .. KEYS[k+1+S] with k = (e-1)*(S+1): meta hash, then each series' hash.
-- ARGV[1] S (series)  ARGV[2] key expiry ms  ARGV[3] entities
-- then per entity:    expected token, new token, applied ("1" when any event was not a redelivery),
--                     wm ("" = none), src, off, "1" to push back the meta hash's expiry,
--                     then per series: n, n bucket/value pairs to set, m, m buckets to delete,
--                     "1" to push back the series key's expiry (the caller knows when a key is created)
-- Result: per entity 1 (written, or nothing to write and the state was current) or 0 (refused).
local unpack = table.unpack or unpack

-- HSET/HDEL with the arguments ARGV[from .. to], in chunks (Lua 5.1's unpack stops at ~8000 values).
local function chunked(command, key, from, to, step)
  while from <= to do
    local last = math.min(to, from + step - 1)
    redis.call(command, key, unpack(ARGV, from, last))
    from = last + 1
  end
end
local S = tonumber(ARGV[1])
local expire = tonumber(ARGV[2])
local entities = tonumber(ARGV[3])
local results = {}
local p = 4
for e = 1, entities do
  local k = (e - 1) * (S + 1)
  local meta = KEYS[k + 1]
  local expected, token, applied = ARGV[p], ARGV[p + 1], ARGV[p + 2] == '1'
  local wm, src, off, expireMeta = ARGV[p + 3], ARGV[p + 4], ARGV[p + 5], ARGV[p + 6] == '1'
  p = p + 7
  local ok = redis.call('HGET', meta, 'v') == expected
  local write = ok and applied
  results[e] = ok and 1 or 0
  for s = 1, S do
    local key = KEYS[k + 1 + s]
    local n = tonumber(ARGV[p])
    p = p + 1
    if write and n > 0 then chunked('HSET', key, p, p + 2 * n - 1, 2000) end
    p = p + 2 * n
    local m = tonumber(ARGV[p])
    p = p + 1
    if write and m > 0 then chunked('HDEL', key, p, p + m - 1, 2000) end
    p = p + m
    if write and ARGV[p] == '1' then redis.call('PEXPIRE', key, expire) end
    p = p + 1
  end
  if write then
    if wm ~= '' then
      redis.call('HSET', meta, 'wm', wm, 'src', src, 'off', off, 'v', token)
    else
      redis.call('HSET', meta, 'src', src, 'off', off, 'v', token)
    end
    if expireMeta then redis.call('PEXPIRE', meta, expire) end
  end
end
return results
