-- prune deletes the retired runs older than the history retention (ARGV[1],
-- milliseconds) by the clock (ARGV[3] is its override), at most ARGV[2]
-- runs per call, each with every key deactivation renamed for it. It reads
-- only what it deletes: the oldest members of deactivations, and each run's
-- own sets (see each_key). The hash stays in transfers: it was seen, and
-- its announces stay refused until it is registered again.
-- Returns {runs deleted, more} where more is 1 when old runs are left.
local retention, batch = tonumber(ARGV[1]), tonumber(ARGV[2])
local _, nowms = clock(ARGV[3])
local runs = redis.call('ZRANGEBYSCORE', K.deactivations, '-inf', nowms - retention, 'LIMIT', 0, batch)
for _, run in ipairs(runs) do
  each_key(run, function(key) redis.call('DEL', key) end)
  redis.call('ZREM', K.deactivations, run)
end
local more = 0
if #runs == batch then more = 1 end
return {#runs, more}
