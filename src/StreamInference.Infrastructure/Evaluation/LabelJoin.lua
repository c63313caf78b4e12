-- The label join for one event, atomically (KEYS[1] = "{<entity>}:eval:<event id>", one hash per event).
-- Fields: "p:<model>|<arm>" = "<score>|<event time ms>|<arm>|<deployment version>" per model's prediction in an arm, "l" = "<0|1>|<label time ms>".
-- ARGV[1] = "p" (a prediction) or "l" (a label); ARGV[2] = the field's value; ARGV[3] = "<model>|<arm>" (predictions);
-- ARGV[4] = when the entry expires (Unix ms: the event's time + the horizon).
-- Returns {outcome, label or "", predictions...}:
--   prediction: "duplicate" | "pending" | "labelled" (its label was there; the first prediction of an early label: "labelled-first")
--   label: "duplicate" | "early" (no prediction yet) | "joined" followed by every prediction's model and value
-- A duplicate of a joined event returns what the first record joined (the label, and the model's prediction or every
-- prediction): a record redelivered after a crash repeats the writes that followed its join, which are idempotent.
local key = KEYS[1]
if ARGV[1] == "p" then
  local field = "p:" .. ARGV[3]
  if redis.call("HSETNX", key, field, ARGV[2]) == 0 then
    local held = redis.call("HGET", key, "l")
    if not held then return {"duplicate"} end
    return {"duplicate", held, ARGV[3], redis.call("HGET", key, field)}
  end
  redis.call("PEXPIREAT", key, ARGV[4])
  local label = redis.call("HGET", key, "l")
  if not label then return {"pending"} end
  if redis.call("HLEN", key) == 2 then return {"labelled-first", label} end
  return {"labelled", label}
end
local out = {"joined", ARGV[2]}
if redis.call("HSETNX", key, "l", ARGV[2]) == 0 then out = {"duplicate", redis.call("HGET", key, "l")} end
local all = redis.call("HGETALL", key)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == "p:" then
    out[#out + 1] = string.sub(all[i], 3)
    out[#out + 1] = all[i + 1]
  end
end
if out[1] == "duplicate" then return out end
if #out == 2 then
  redis.call("PEXPIREAT", key, ARGV[4])
  return {"early"}
end
return out
