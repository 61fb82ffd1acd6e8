-- deactivate retires transfer h: sets deregistered, leaves
-- active_transfers, and renames every key of the transfer to
-- <datetime>:<hash>..., all in one step, so that no key starts with h
-- afterwards; deactivations records the run (<datetime>:<hash>, scored by
-- its time), to find the renamed keys later. The cost follows the transfer,
-- not the keyspace (see each_key).
-- ARGV[2] is the clock override (see clock). With ARGV[3] (an idle timeout
-- in milliseconds) it retires h only if h is still idle: no current peer,
-- and neither its last announce nor, never announced, its activation within
-- the timeout; a peer that announced meanwhile keeps it.
-- Returns the datetime of deactivation, or 0 when h is not active (or no
-- longer idle).
local h, idle_ms = ARGV[1], ARGV[3]
local now, nowms = clock(ARGV[2])
if redis.call('SISMEMBER', K.active, h) == 0 then return 0 end
if idle_ms and idle_ms ~= '' then
  local idle_before = datetime((nowms - tonumber(idle_ms)) * 1000)
  if redis.call('ZCARD', K.field(h, K.t.seen)) > 0 then return 0 end
  local last = redis.call('GET', K.field(h, K.t.last_announce)) or redis.call('GET', K.field(h, K.t.registered)) or ''
  if last >= idle_before then return 0 end
end
redis.call('SET', K.field(h, K.t.deregistered), now)
redis.call('SREM', K.active, h)

local to = K.archived(now, h)
each_key(h, function(key)
  if redis.call('EXISTS', key) == 1 then
    redis.call('RENAME', key, to .. string.sub(key, #h + 1))
  end
end)
redis.call('ZADD', K.deactivations, nowms, to)
return now
