-- timeline adds one sample of per-rack progress to the timeline of active
-- transfer h, at most one per period however many tracker processes sample:
-- the sample's score is the start of its period on the store's clock, and a
-- period that has a sample keeps it. The member is "<score> <racks JSON>",
-- unique by its score. When the timeline holds more than ARGV[5] samples,
-- every other one is dropped (the first and the latest stay), so a long
-- rollout keeps its whole course at a coarser step in the past.
-- ARGV: h, clock override, period ms, racks JSON, keep, reference age ms.
-- Returns {added (0/1), period start ms, the latest sample at least
-- ARGV[6] ms older than now (false when none)}, or {-1} when h is not
-- active (no key is written under a retired hash).
local h, period, racks, keep, refage = ARGV[1], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local _, nowms = clock(ARGV[2])
if redis.call('SISMEMBER', K.active, h) == 0 then return {-1} end
local key = K.field(h, K.t.timeline)
local start = nowms - (nowms % period)
local added = 0
if redis.call('ZCOUNT', key, start, start) == 0 then
  redis.call('ZADD', key, start, start .. ' ' .. racks)
  added = 1
  local n = redis.call('ZCARD', key)
  if n > keep then
    local all = redis.call('ZRANGE', key, 0, -1)
    local drop = {}
    for i = 2, n - 1, 2 do drop[#drop + 1] = all[i] end
    for i = 1, #drop, 256 do
      redis.call('ZREM', key, unpack(drop, i, math.min(i + 255, #drop)))
    end
  end
end
local ref = redis.call('ZREVRANGEBYSCORE', key, nowms - refage, '-inf', 'LIMIT', 0, 1)
return {added, start, ref[1] or false}
