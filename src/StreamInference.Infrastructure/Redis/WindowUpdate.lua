-- Windowed-aggregate update for a micro-batch (StreamInference), one or more entities per call.
-- For each entity: returns its state as it was before this call, then applies the batch's events to it
-- in order. Mirrors StreamInference.Core.Features.Windows.WindowEngine (late rule, bucket index,
-- retention) and RedisFeatureStore.Replay (redelivery rule); the parity, redelivery and state tests
-- hold them together. Runs on Redis (Lua 5.1) and Garnet (Lua 5.4).
--
-- Per entity e, keys KEYS[k+1] .. KEYS[k+1+S] with k = (e-1)*(S+1):
--   meta hash (wm = watermark, src = topic/partition, off = last applied offset, v = version token),
--   then the bucket hash of each series (field = bucket index, value = "count|sum|min|max").
-- ARGV[1] S (series)  ARGV[2] allowed lateness ms  ARGV[3] key expiry ms  ARGV[4] entities
-- ARGV[5..4+2S]       per series: bucket ms, retained buckets
-- then per entity:    version token, event count n, then n times: src, offset, event time ms,
--                     S values ("" = missing)
-- Result per entity: { wm, src, off, v after the call, then each series' HGETALL } (state before the call).
-- A call that applies events stores the caller's token (unique per call) as v; WindowWrite.lua then lets
-- the caller write its own next update while v still equals that token.
local S = tonumber(ARGV[1])
local L = tonumber(ARGV[2])
local expire = tonumber(ARGV[3])
local entities = tonumber(ARGV[4])
local width, retain = {}, {}
for s = 1, S do
  width[s] = tonumber(ARGV[3 + 2 * s])
  retain[s] = tonumber(ARGV[4 + 2 * s])
end

local function update(k, p)
  local meta = KEYS[k + 1]
  local token = ARGV[p]
  p = p + 1
  local m = redis.call('HMGET', meta, 'wm', 'src', 'off', 'v')
  local result = { m[1] or '', m[2] or '', m[3] or '', m[4] or '' }
  local wm = m[1] and tonumber(m[1]) or nil
  local src = m[2] or nil
  local off = m[3] and tonumber(m[3]) or nil

  local state, changed = {}, {}
  for s = 1, S do
    local flat = redis.call('HGETALL', KEYS[k + 1 + s])
    result[4 + s] = flat
    local buckets = {}
    for i = 1, #flat, 2 do buckets[flat[i]] = flat[i + 1] end
    state[s] = buckets
    changed[s] = {}
  end

  local applied = false
  local events = tonumber(ARGV[p])
  p = p + 1
  for e = 1, events do
    local esrc, eoff, t = ARGV[p], tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
    if not (src == esrc and off ~= nil and eoff <= off) then
      src, off, applied = esrc, eoff, true
      if wm == nil or t >= wm - L then
        for s = 1, S do
          local v = ARGV[p + 2 + s]
          if v ~= '' then
            local b = tostring(math.floor(t / width[s]))
            local cur = state[s][b]
            if cur then
              local c, sm, mn, mx = string.match(cur, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
              local x = tonumber(v)
              if x < tonumber(mn) then mn = v end
              if x > tonumber(mx) then mx = v end
              cur = string.format('%d|%.17g|', tonumber(c) + 1, tonumber(sm) + x) .. mn .. '|' .. mx
            else
              cur = '1|' .. v .. '|' .. v .. '|' .. v
            end
            state[s][b] = cur
            changed[s][b] = cur
          end
        end
        if wm == nil or t > wm then wm = t end
      end
    end
    p = p + 3 + S
  end

  if applied then
    if wm ~= nil then
      redis.call('HSET', meta, 'wm', string.format('%.17g', wm), 'src', src, 'off', string.format('%.17g', off), 'v', token)
    else
      redis.call('HSET', meta, 'src', src, 'off', string.format('%.17g', off), 'v', token)
    end
    result[4] = token
    redis.call('PEXPIRE', meta, expire)
    for s = 1, S do
      local key = KEYS[k + 1 + s]
      local from = nil
      if wm ~= nil then from = math.floor((wm - 2 * L) / width[s]) - retain[s] - 1 end
      for b, v in pairs(changed[s]) do
        if from == nil or tonumber(b) >= from then redis.call('HSET', key, b, v) end
      end
      if from ~= nil then
        for b, _ in pairs(state[s]) do
          if tonumber(b) < from then redis.call('HDEL', key, b) end
        end
      end
      redis.call('PEXPIRE', key, expire)
    end
  end
  return result, p
end

local results = {}
local p = 5 + 2 * S
for e = 1, entities do
  results[e], p = update((e - 1) * (S + 1), p)
end
return results
