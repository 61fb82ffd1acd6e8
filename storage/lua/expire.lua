-- expire removes the peers of transfer h whose last announce is ARGV[2]
-- milliseconds (the peer timeout) or more before now from every current
-- set, at most ARGV[5] of them per call, and refills the representative
-- slots they held. ARGV[6] is the clock override (see clock).
-- Returns {expired, elected, more} where more is 1 when peers are left.
local h = ARGV[1]
local _, nowms = clock(ARGV[6])
local cutoff = nowms - tonumber(ARGV[2])
local limit, stall_limit, batch = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local seen = K.field(h, K.t.seen)
local ips = redis.call('ZRANGEBYSCORE', seen, '-inf', cutoff, 'LIMIT', 0, batch)
local racks = {}
local ds, dl = 0, 0
for _, ip in ipairs(ips) do
  local pr = redis.call('MGET', K.peer(h, ip, K.p.port), K.peer(h, ip, K.p.rack), K.peer(h, ip, K.p.seeder))
  if pr[1] then
    local _, s, l = leave_current(h, pr[2], K.peerstr(ip, pr[1]), {seeder = pr[3] == 'True', rep = true})
    ds, dl = ds + s, dl + l
    if pr[2] then racks[pr[2]] = true end
  end
  redis.call('ZREM', seen, ip)
end
add_counters(h, ds, dl)
local elected = 0
for rack in pairs(racks) do elected = elected + elect(h, rack, limit, stall_limit, nil) end
local more = 0
if #ips == batch then more = 1 end
return {#ips, elected, more}
