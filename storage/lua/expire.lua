-- expire removes the peers of transfer h whose deadline (the score of the
-- expiry index, see timers.go) has passed from every current set, at most
-- ARGV[4] of them per call, and refills the representative slots they
-- held. ARGV[2] is the clock override (see clock), ARGV[3] the
-- representatives per rack, ARGV[5..11] the timers (storage.Timers).
-- A peer written by an older version has no latest announce and its score
-- is that announce: its deadline is that plus the peer timeout, written
-- back (with that announce) when it has not passed yet.
-- Returns {expired, elected, more} where more is 1 when peers are left.
local h = ARGV[1]
local _, nowms = clock(ARGV[2])
local limit, batch = tonumber(ARGV[3]), tonumber(ARGV[4])
local T = timers(ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], nowms)
local seen = K.field(h, K.t.seen)
local due = redis.call('ZRANGEBYSCORE', seen, '-inf', nowms, 'WITHSCORES', 'LIMIT', 0, batch)
local racks = {}
local ds, dl = 0, 0
local expired = 0
for i = 1, #due, 2 do
  local ip, score = due[i], tonumber(due[i + 1])
  local pr = redis.call('MGET', K.peer(h, ip, K.p.port), K.peer(h, ip, K.p.rack), K.peer(h, ip, K.p.seeder), K.peer(h, ip, K.p.announced))
  if pr[1] and not pr[4] and score + T.timeout > nowms then
    redis.call('ZADD', seen, score + T.timeout, ip)
    redis.call('SET', K.peer(h, ip, K.p.announced), string.format('%.0f', score))
  else
    if pr[1] then
      local _, s, l = leave_current(h, pr[2] or nil, K.peerstr(ip, pr[1]), {seeder = pr[3] == 'True', rep = true})
      ds, dl = ds + s, dl + l
      if pr[2] then racks[pr[2]] = true end
    end
    redis.call('ZREM', seen, ip)
    expired = expired + 1
  end
end
add_counters(h, ds, dl)
local elected = 0
for rack in pairs(racks) do elected = elected + elect(h, rack, limit, T, nil) end
local more = 0
if #due == 2 * batch then more = 1 end
return {expired, elected, more}
