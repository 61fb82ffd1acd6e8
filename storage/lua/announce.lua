-- announce records one announce of transfer h atomically: activation on
-- the fly, the peer's keys, the class sets and counters, timestamps,
-- representative stall, demotion and election. It then samples the stages
-- the tracker's plan wants for the asker's role, so that an announce is one
-- round trip. The arguments (A) and the reply's layout (R) are declared in
-- announce.go.
--
-- A periodic announce of a known peer (same port, same rack, still
-- current) writes only what changed: its report, its latest announce and
-- cadence, its deadline in the expiry index, its left in the election
-- order; the "every ... seen" sets are written when a peer is new to the
-- transfer, rack or port. Timers (expiry, overdue representatives, stall)
-- follow each peer's own cadence: see timers.go.
local h, ip, port, peer = A.hash, A.ip, A.port, A.peer
local event, rack, host = A.event, A.rack, A.hostname
local now, nowms = clock(A.clock)
local limit = tonumber(A.reps)
local T = timers(A.timeout, A.cadences, A.first, A.stall, A.overdue, A.max_cadence, A.overdue_floor, nowms)
local numwant = tonumber(A.numwant)

if redis.call('SISMEMBER', K.active, h) == 0 then
  -- Seen but not active: deactivated, until registered again.
  if redis.call('SISMEMBER', K.transfers, h) == 1 then return {ST.deactivated} end
  if A.allow ~= '1' then return {ST.unregistered} end
  -- A stop for a transfer nobody runs activates nothing.
  if event == K.ev.stopped then return {ST.unknown} end
  local cap = tonumber(A.max_unregistered)
  if cap > 0 and unregistered_at_least(cap) then return {ST.full} end
  redis.call('SADD', K.transfers, h)
  redis.call('SADD', K.active, h)
  redis.call('SET', K.field(h, K.t.registered), now)
end

local reps = rack_reps(h, rack)

-- One read for everything the announce compares against: the peer's
-- stored fields, its rack's stall mark, the transfer's counters, and the
-- latest announce and cadence of the rack's other representatives.
local fields = K.peer_fields
local mkeys = {}
for i, f in ipairs(fields) do mkeys[i] = K.peer(h, ip, f) end
local nf = #fields
local rstalls_key = K.rackset(h, rack, K.r.stalls)
local complete_key, incomplete_key = K.field(h, K.t.complete), K.field(h, K.t.incomplete)
mkeys[nf + 1] = rstalls_key
mkeys[nf + 2] = complete_key
mkeys[nf + 3] = incomplete_key
local others = {}
for _, p in ipairs(reps.list) do
  local pip = K.peerip(p)
  if pip ~= ip then
    others[#others + 1] = p
    mkeys[#mkeys + 1] = K.peer(h, pip, K.p.announced)
    mkeys[#mkeys + 1] = K.peer(h, pip, K.p.cadence)
  end
end
local vals = redis.call('MGET', unpack(mkeys))
local old = {}
for i, f in ipairs(fields) do old[f] = vals[i] or nil end
-- The rack's stall mark; a small number is a count of an older version.
local rstall = tonumber(vals[nf + 1] or nil)
if rstall and rstall < 1e12 then rstall = nil end
local complete0, incomplete0 = tonumber(vals[nf + 2] or 0), tonumber(vals[nf + 3] or 0)
local rep_seen = {}
for i, p in ipairs(others) do
  rep_seen[p] = {vals[nf + 2 + 2 * i] or nil, vals[nf + 3 + 2 * i] or nil}
end
local complete, incomplete = complete0, incomplete0
local oldport, oldrack, oldleft = old[K.p.port], old[K.p.rack], old[K.p.left]
local known = oldport == port and oldrack == rack
-- Another client (peer_id) current on this IP: NAT or containers.
local shared = 0
if old[K.p.peer_id] and old[K.p.peer_id] ~= A.peer_id and redis.call('ZSCORE', K.field(h, K.t.seen), ip) then
  shared = 1
end

local demoted, elected = 0, 0

-- drop_overdue takes the role from the rack's representatives that are
-- overdue for their own cadence, so that the election that follows
-- refills their slots at this announce rather than at their expiry.
local function drop_overdue()
  for _, p in ipairs(others) do
    local st = rep_seen[p]
    if reps.set[p] and overdue(T, st[1], st[2]) then
      demote(h, rack, p, reps)
      demoted = demoted + 1
    end
  end
end

-- A host that comes back on another port, or in another rack after a rack
-- map reload, replaces its old member everywhere.
local keeprep = false
if oldport and not known then
  local op = K.peerstr(ip, oldport)
  local wasrep, ds, dl = leave_current(h, oldrack, op, nil)
  complete, incomplete = complete + ds, incomplete + dl
  keeprep = wasrep and oldrack == rack
  reps_drop(reps, op)
  if oldport ~= port then
    -- Every set: the host may have been seen in several racks.
    redis.call('SREM', K.peers(h, K.c.seen), op)
    for _, r in ipairs(redis.call('SMEMBERS', K.field(h, K.t.racks))) do
      redis.call('SREM', K.rackset(h, r, K.c.seen), op)
    end
  end
  if oldrack and oldrack ~= rack then
    -- The slot it held in its old rack is filled at once, not at that
    -- rack's next announce.
    elect(h, oldrack, limit, T, nil)
  end
end

local nleft = tonumber(A.left)
local seeder = nleft == 0
local wasseeder = old[K.p.seeder] == 'True'

-- The peer's fields: only those that differ from what is stored.
local new = {
  [K.p.compact] = A.compact, [K.p.port] = port, [K.p.peer_id] = A.peer_id, [K.p.key] = A.key,
  [K.p.seeder] = seeder and 'True' or 'False', [K.p.downloaded] = A.downloaded,
  [K.p.left] = A.left, [K.p.uploaded] = A.uploaded, [K.p.rack] = rack, [K.p.hostname] = host,
}
if event ~= '' then new[K.p.last_event] = event end

-- The cadence: the gap since the peer's previous announce, learned at a
-- periodic announce that came before its deadline (a peer back from an
-- absence, or one whose event came out of its cycle, teaches nothing). A
-- longer gap is taken at once, a shorter one pulls it down by a quarter.
local prev, cadence = tonumber(old[K.p.announced]), tonumber(old[K.p.cadence])
if event == '' and prev and nowms > prev and nowms <= deadline(T, prev, cadence) then
  local gap = nowms - prev
  if not cadence or gap >= cadence then
    cadence = gap
  else
    cadence = cadence - math.floor((cadence - gap) / 4)
  end
  cadence = math.min(cadence, T.max)
  new[K.p.cadence] = tostring(cadence)
end
new[K.p.announced] = tostring(nowms)
local mset = {K.field(h, K.t.last_announce), now}
for i, f in ipairs(fields) do
  local v = new[f]
  if v ~= nil and v ~= old[f] then
    mset[#mset + 1] = mkeys[i]
    mset[#mset + 1] = v
  end
end
if event ~= '' then
  mset[#mset + 1] = K.event(h, ip, event)
  mset[#mset + 1] = now
end
if event == K.ev.started then
  redis.call('SETNX', K.field(h, K.t.first_started), now)
  mset[#mset + 1] = K.field(h, K.t.last_started)
  mset[#mset + 1] = now
end
-- A completion counts once, when the peer reaches left=0, whether or not it
-- says "completed" (rtorrent and anacrolix never do): a leecher that now
-- reports left=0, or a "completed" from a peer the transfer has no record
-- of. A second "completed", or one from a peer that was a seeder already,
-- counts nothing.
local finished = seeder and ((oldleft and tonumber(oldleft) > 0) or (not oldleft and event == K.ev.completed))
if finished then
  redis.call('SETNX', K.field(h, K.t.first_completed), now)
  mset[#mset + 1] = K.field(h, K.t.last_completed)
  mset[#mset + 1] = now
  redis.call('INCR', K.field(h, K.t.completions))
end
redis.call('MSET', unpack(mset))

-- The "every ... seen" sets.
if not known then
  redis.call('SADD', K.racks, rack)
  redis.call('SADD', K.field(h, K.t.racks), rack)
  redis.call('SADD', K.peers(h, K.c.seen), peer)
  redis.call('SADD', K.rackset(h, rack, K.c.seen), peer)
end
if not known or old[K.p.hostname] ~= host then
  redis.call('SADD', K.rack(rack), host)
end

-- write_counters stores the counters when they moved.
local function write_counters()
  if complete ~= complete0 then redis.call('SET', complete_key, complete) end
  if incomplete ~= incomplete0 then redis.call('SET', incomplete_key, incomplete) end
end

local seen_key = K.field(h, K.t.seen)
if event == K.ev.stopped then
  -- Only a current peer is in any current set (the expiry index says
  -- which): a stop after a stop, or after expiry, has nothing to remove.
  -- A host that changed port or rack left its old sets above.
  if redis.call('ZREM', seen_key, ip) == 1 and known then
    local _, ds, dl = leave_current(h, rack, peer, {seeder = wasseeder, rep = reps.set[peer]})
    complete, incomplete = complete + ds, incomplete + dl
    reps_drop(reps, peer)
  end
  drop_overdue()
  elected = elect(h, rack, limit, T, reps)
  write_counters()
  local out = {}
  out[R.status], out[R.complete], out[R.incomplete] = ST.ok, complete, incomplete
  out[R.role], out[R.escape], out[R.elected], out[R.demoted] = ROLE.stopped, 0, elected, demoted
  out[R.shared] = shared
  return out
end

-- The current sets. A peer that was current, known and keeps its class is
-- in them already: only its left moves in the election order.
local rs, rr, rl = K.rackset(h, rack, K.c.seeders), K.rackset(h, rack, K.c.reps), K.rackset(h, rack, K.r.left)
local fresh = redis.call('ZADD', seen_key, deadline(T, nowms, cadence), ip) == 1
if fresh or not known or seeder ~= wasseeder then
  -- Only a current peer that kept its port and rack is in the other
  -- class's sets (a new member was taken out of its old one's above).
  local in_other = known and not fresh
  if seeder then
    complete = complete + redis.call('SADD', K.peers(h, K.c.seeders), peer)
    redis.call('SADD', rs, peer)
    if in_other then
      incomplete = incomplete - redis.call('SREM', K.peers(h, K.c.leechers), peer)
      redis.call('ZREM', rl, peer)
      redis.call('ZREM', K.rackset(h, rack, K.r.since), peer)
    end
  else
    incomplete = incomplete + redis.call('SADD', K.peers(h, K.c.leechers), peer)
    if in_other then
      complete = complete - redis.call('SREM', K.peers(h, K.c.seeders), peer)
      redis.call('SREM', rs, peer)
    end
    redis.call('ZADD', rl, nleft, peer)
    redis.call('ZADD', K.rackset(h, rack, K.r.since), 'NX', nowms, peer)
  end
elseif not seeder and oldleft ~= A.left then
  redis.call('ZADD', rl, nleft, peer)
end
if keeprep then
  redis.call('SADD', K.peers(h, K.c.reps), peer)
  redis.call('SADD', rr, peer)
  reps_add(reps, peer)
end
write_counters()

-- rack_has_seeder asks once whether the rack holds a seeder.
local rack_seeded
local function rack_has_seeder()
  if rack_seeded == nil then
    if seeder then
      rack_seeded = true
    else
      rack_seeded = redis.call('EXISTS', rs) == 1
    end
  end
  return rack_seeded
end

-- Progress, measured in time: a rack stalls when none of its leechers'
-- left has shrunk for T.stall since the first announce that showed none
-- (its stall mark); a representative stalls when its own left has not
-- shrunk for T.stall since its election or the announce that last
-- reported that left, whichever is later (its stall mark), while its rack
-- has no seeder to fetch from instead. At a cadence longer than T.stall,
-- a representative is demoted at its first announce without progress.
local isrep = reps.set[peer] == true
-- Before any seeder exists nobody can be blamed for not progressing: nobody
-- stalls then, or leechers that start before their origin would all end up
-- unelectable.
if not seeder and oldleft then
  if nleft < tonumber(oldleft) then
    if vals[nf + 1] then
      redis.call('DEL', rstalls_key)
      rstall = nil
    end
    if old[K.p.stalls] then redis.call('DEL', K.peer(h, ip, K.p.stalls)) end
  elseif complete > 0 then
    if not rstall then
      rstall = nowms
      redis.call('SET', rstalls_key, rstall)
    end
    if isrep and not rack_has_seeder() then
      local mark = tonumber(old[K.p.stalls])
      if not mark then
        mark = prev or nowms
        redis.call('SET', K.peer(h, ip, K.p.stalls), mark)
      end
      if stalled(T, mark) then
        demote(h, rack, peer, reps)
        isrep = false
        demoted = demoted + 1
      end
    end
  elseif isrep and old[K.p.stalls] and tonumber(old[K.p.stalls]) >= 1e12 then
    -- No seeder anywhere yet: the stall is measured once there is one.
    redis.call('DEL', K.peer(h, ip, K.p.stalls))
  end
end

-- A paused peer (BEP 21) downloads nothing more: it cannot fetch for its
-- rack, so it gives up the role and is not elected while paused.
if event == K.ev.paused and not seeder then
  redis.call('SET', K.peer(h, ip, K.p.stalls), 0)
  if isrep then
    demote(h, rack, peer, reps)
    isrep = false
    demoted = demoted + 1
  end
end

drop_overdue()
elected = elect(h, rack, limit, T, reps)
isrep = reps.set[peer] == true

local role = ROLE.leecher
if seeder then role = ROLE.seeder elseif isrep then role = ROLE.rep end

local escape = 0
if role == ROLE.leecher then
  if reps.n == 0 and not rack_has_seeder() then
    escape = 1
  elseif rstall and nowms - rstall >= T.stall then
    escape = 1
  end
end

local out = {}
out[R.status], out[R.complete], out[R.incomplete] = ST.ok, complete, incomplete
out[R.role], out[R.escape], out[R.elected], out[R.demoted] = role, escape, elected, demoted
out[R.shared] = shared
if numwant <= 0 then return out end

-- Sampling: the stages of the plan for this role, each class drawn with
-- one call at most, about n+1 of each (the asker may be among them).
local plan = A.plan_leecher
if role == ROLE.rep then plan = A.plan_rep
elseif role == ROLE.seeder then plan = A.plan_seeder
elseif escape == 1 then plan = A.plan_escape end

local seeded = false
-- pick draws up to n members of list at random (a partial shuffle).
local function pick(list, n)
  if #list <= n then return list end
  if not seeded then
    math.randomseed(tonumber(A.seed))
    seeded = true
  end
  for i = 1, n do
    local j = math.random(i, #list)
    list[i], list[j] = list[j], list[i]
  end
  local out_ = {}
  for i = 1, n do out_[i] = list[i] end
  return out_
end

-- not_in keeps the members of list that are not in set, at most n.
local function not_in(list, set, n)
  local out_ = {}
  for _, m in ipairs(list) do
    if #out_ >= n then break end
    if not set[m] then out_[#out_ + 1] = m end
  end
  return out_
end

local draw = {}
draw[CL.own_seeders] = function(n)
  if rack_seeded == false then return {} end
  return redis.call('SRANDMEMBER', rs, n)
end
draw[CL.own_reps] = function(n) return pick(reps.list, n) end
draw[CL.own_leechers] = function(n) return redis.call('ZRANDMEMBER', rl, n) end
draw[CL.other_seeders] = function(n)
  -- Drawn from every seeder, the rack's own dropped with one SMISMEMBER.
  -- (Drawing racks first would miss the lone origin seeder of a young
  -- transfer, or visit every rack for it.)
  local cands = redis.call('SRANDMEMBER', K.peers(h, K.c.seeders), 2 * n + 2)
  if #cands == 0 then return cands end
  local own = redis.call('SMISMEMBER', rs, unpack(cands))
  local out_ = {}
  for i, m in ipairs(cands) do
    if #out_ >= n then break end
    if own[i] == 0 then out_[#out_ + 1] = m end
  end
  return out_
end
draw[CL.other_reps] = function(n)
  -- A rack holds at most limit representatives: n + limit draws leave n
  -- of other racks when there are that many.
  return not_in(redis.call('SRANDMEMBER', K.peers(h, K.c.reps), n + reps.n), reps.set, n)
end
draw[CL.other_leeching_reps] = function(n)
  -- At most limit per rack: the whole difference is small.
  local all = redis.call('SDIFF', K.peers(h, K.c.reps), K.peers(h, K.c.seeders))
  return pick(not_in(all, reps.set, #all), n)
end
draw[CL.all_seeders] = function(n) return redis.call('SRANDMEMBER', K.peers(h, K.c.seeders), n) end
draw[CL.all_leechers] = function(n) return redis.call('SRANDMEMBER', K.peers(h, K.c.leechers), n) end

-- The tracker takes from each stage in turn, up to the stage's n, until it
-- holds numwant peers; it skips the asker and peers it took already. So a
-- later stage needs no more than what may still be missing: budget is an
-- upper bound of it. A class draws budget + 1 (the asker) + what earlier
-- stages drew of classes that share members with it (OVERLAP), so that
-- what the tracker may have taken of it already cannot leave the stage
-- short. The tracker surely takes, of a stage, at least its n (or what is
-- missing), or what the largest draw holds less the asker and those
-- earlier draws; budget goes down by that. Once budget is 0 a stage draws
-- nothing.
local stages = {}
local budget = numwant
local drawn = {} -- class letter -> members earlier stages drew of it
for classes, want in string.gmatch(plan, '(%a*):(%d+)') do
  local n = tonumber(want)
  if n <= 0 or n > numwant then n = numwant end
  local got = {}
  if budget > 0 then
    local need = math.min(n, budget)
    local sure = 0
    local counts = {}
    for c in string.gmatch(classes, '%a') do
      local extra = 0
      for pc, k in pairs(drawn) do
        if string.find(OVERLAP[c], pc, 1, true) then extra = extra + k end
      end
      local part = draw[c](need + 1 + extra)
      counts[c] = (counts[c] or 0) + #part
      sure = math.max(sure, #part - 1 - extra)
      for _, m in ipairs(part) do got[#got + 1] = m end
    end
    for c, k in pairs(counts) do drawn[c] = (drawn[c] or 0) + k end
    budget = budget - math.min(need, sure)
  end
  stages[#stages + 1] = got
end

if A.peer_ids == '1' then
  -- One read for the peer ids of every candidate.
  local idkeys = {}
  for _, got in ipairs(stages) do
    for _, m in ipairs(got) do idkeys[#idkeys + 1] = K.peer(h, K.peerip(m), K.p.peer_id) end
  end
  if #idkeys > 0 then
    local ids = redis.call('MGET', unpack(idkeys))
    local i = 0
    for s, got in ipairs(stages) do
      local with = {}
      for _, m in ipairs(got) do
        i = i + 1
        with[#with + 1] = m
        with[#with + 1] = ids[i] or ''
      end
      stages[s] = with
    end
  end
end

for _, got in ipairs(stages) do out[#out + 1] = got end
return out
