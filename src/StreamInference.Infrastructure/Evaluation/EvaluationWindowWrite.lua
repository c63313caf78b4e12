-- One write to an evaluation window (KEYS[1] = "evalw:{<model>|<arm>|<start>}", one hash per window).
-- ARGV[1] = the event id (field), ARGV[2] = the value ("<score>" or "<score>|<0|1>"), ARGV[3] = "nx" (a prediction: only
-- when absent) or "set" (a labelled prediction), ARGV[4] = when the hash expires (Unix ms), set once.
-- A window marked final (field "!final", set by its reporter before it reads the window) takes no more writes:
-- returns 0 then, 1 otherwise. The check and the write are one step, so nothing lands after the report's read.
local key = KEYS[1]
if redis.call("HEXISTS", key, "!final") == 1 then return 0 end
if ARGV[3] == "nx" then redis.call("HSETNX", key, ARGV[1], ARGV[2]) else redis.call("HSET", key, ARGV[1], ARGV[2]) end
if redis.call("PTTL", key) < 0 then redis.call("PEXPIREAT", key, ARGV[4]) end
return 1
