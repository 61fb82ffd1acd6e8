-- Shared by every script. keys.go's luaKeys (the K table) comes before it.
-- Scripts address keys they derive from data (racks, peers), which is why
-- the store needs a standalone Redis: a cluster would refuse them.
--
-- Every redis.call counts: on the embedded store each one renders its reply
-- and parses it back. Sets are read once into Lua tables (set_of) rather
-- than asked member by member.

-- set_of turns a list of members into a set table.
local function set_of(list)
  local s = {}
  for _, m in ipairs(list) do s[m] = true end
  return s
end

-- call_chunked runs cmd key m1 m2 ... over a long list of members in
-- chunks (Lua's unpack has a limit) and concatenates array replies.
local function call_chunked(cmd, key, list)
  local out = {}
  for i = 1, #list, 1000 do
    local part = redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
    if type(part) == 'table' then
      for _, v in ipairs(part) do out[#out + 1] = v end
    end
  end
  return out
end

-- rack_reps reads the representatives of rack: {list, set, n}.
local function rack_reps(h, rack)
  local list = redis.call('SMEMBERS', K.rackset(h, rack, K.c.reps))
  return {list = list, set = set_of(list), n = #list}
end

-- reps_drop and reps_add keep a rack_reps table in step with a change.
local function reps_drop(reps, p)
  if not reps.set[p] then return end
  reps.set[p] = nil
  reps.n = reps.n - 1
  for i, m in ipairs(reps.list) do
    if m == p then
      table.remove(reps.list, i)
      break
    end
  end
end

local function reps_add(reps, p)
  if reps.set[p] then return end
  reps.set[p] = true
  reps.list[#reps.list + 1] = p
  reps.n = reps.n + 1
end

-- leave_current removes peer p of rack from every "current" set of transfer
-- h (seeders, leechers, representatives). was tells what p was when the
-- caller knows it ({seeder = bool}), so that only its own sets are touched;
-- nil touches all. Returns whether p was a representative and the changes
-- to the complete and incomplete counters, which the caller writes.
-- Membership in N is left alone: N is every peer seen.
local function leave_current(h, rack, p, was)
  local ds, dl = 0, 0
  if not was or was.seeder then
    ds = -redis.call('SREM', K.peers(h, K.c.seeders), p)
    if rack then redis.call('SREM', K.rackset(h, rack, K.c.seeders), p) end
  end
  if not was or not was.seeder then
    dl = -redis.call('SREM', K.peers(h, K.c.leechers), p)
    if rack then
      redis.call('ZREM', K.rackset(h, rack, K.r.left), p)
      redis.call('ZREM', K.rackset(h, rack, K.r.since), p)
    end
  end
  local wasrep = false
  if not was or was.rep then
    wasrep = redis.call('SREM', K.peers(h, K.c.reps), p) == 1
    if rack then redis.call('SREM', K.rackset(h, rack, K.c.reps), p) end
  end
  return wasrep, ds, dl
end

-- add_counters applies counter changes of leave_current.
local function add_counters(h, ds, dl)
  if ds ~= 0 then redis.call('INCRBY', K.field(h, K.t.complete), ds) end
  if dl ~= 0 then redis.call('INCRBY', K.field(h, K.t.incomplete), dl) end
end

-- timers reads the arguments of storage.Timers (see timers.go) at now
-- (unix ms): T.timeout, T.cadences, T.first, T.stall, T.overdue, T.max,
-- T.floor.
local function timers(timeout, cadences, first, stall, overdue, maxc, floor, nowms)
  return {
    timeout = tonumber(timeout), cadences = tonumber(cadences), first = tonumber(first),
    stall = tonumber(stall), overdue = tonumber(overdue), max = tonumber(maxc),
    floor = tonumber(floor), now = nowms,
  }
end

-- cadence_of is a peer's stored cadence, or the first cadence when it has
-- none yet.
local function cadence_of(T, stored)
  return tonumber(stored) or T.first
end

-- deadline is when a peer that announces at at (unix ms) with cadence
-- (stored, or nil) expires.
local function deadline(T, at, cadence)
  return at + math.max(T.timeout, math.floor(T.cadences * cadence_of(T, cadence)))
end

-- overdue tells whether a peer whose latest announce was at (stored, or
-- nil: a peer of an older version, never overdue) with cadence is overdue:
-- silent for the longer of the overdue floor and T.overdue cadences.
local function overdue(T, at, cadence)
  at = tonumber(at)
  if not at then return false end
  return T.now > at + math.max(T.floor, T.overdue * cadence_of(T, cadence))
end

-- stalled tells whether a stored stall mark (since when the peer made no
-- progress, unix ms) is older than the stall time. 0 marks a paused peer;
-- small numbers are counts of an older version: both are stalled.
local function stalled(T, mark)
  mark = tonumber(mark)
  if not mark then return false end
  return mark < 1e12 or T.now - mark >= T.stall
end

-- demote takes peer p out of the representatives of rack; its stall mark
-- (or a pause) keeps it from being elected again until it progresses.
local function demote(h, rack, p, reps)
  redis.call('SREM', K.rackset(h, rack, K.c.reps), p)
  redis.call('SREM', K.peers(h, K.c.reps), p)
  if reps then reps_drop(reps, p) end
end

-- elect fills the free representative slots of rack with its current
-- leechers of most progress (least left), the first to have announced among
-- equals, skipping peers that stalled as representatives until they
-- progress again, and peers overdue for their own cadence (see timers.go).
-- reps is the rack's representatives (rack_reps), kept up to date; nil
-- reads them. Returns how many it elected.
local function elect(h, rack, limit, T, reps)
  reps = reps or rack_reps(h, rack)
  if reps.n >= limit then return 0 end
  local lk = K.rackset(h, rack, K.r.left)
  -- A bounded window: representatives and stalled peers are the only ones
  -- skipped, and a rack rarely holds 64 of them.
  local window = redis.call('ZRANGE', lk, 0, 63, 'WITHSCORES')
  if #window == 128 then
    -- Redis orders equal scores by member text: take every tie at the
    -- window's edge, so that arrival order, not address, decides among them
    -- (at a transfer's start every leecher has the same left).
    window = redis.call('ZRANGEBYSCORE', lk, '-inf', window[128], 'WITHSCORES')
  end
  local cands, left = {}, {}
  for i = 1, #window, 2 do
    local c = window[i]
    if not reps.set[c] then
      cands[#cands + 1] = c
      left[c] = tonumber(window[i + 1])
    end
  end
  if #cands == 0 then return 0 end
  local since = call_chunked('ZMSCORE', K.rackset(h, rack, K.r.since), cands)
  -- Three leaves per candidate: its stall mark, latest announce, cadence.
  local skeys = {}
  local first = {}
  for i, c in ipairs(cands) do
    first[c] = tonumber(since[i] or 0)
    local ip = K.peerip(c)
    skeys[#skeys + 1] = K.peer(h, ip, K.p.stalls)
    skeys[#skeys + 1] = K.peer(h, ip, K.p.announced)
    skeys[#skeys + 1] = K.peer(h, ip, K.p.cadence)
  end
  local vals = {}
  for i = 1, #skeys, 999 do
    local part = redis.call('MGET', unpack(skeys, i, math.min(i + 998, #skeys)))
    for _, v in ipairs(part) do vals[#vals + 1] = v end
  end
  local skip = {}
  for i, c in ipairs(cands) do
    local j = 3 * (i - 1)
    -- MGET answers false for a missing key.
    local function val(k) local v = vals[j + k]; if v then return v end return nil end
    skip[c] = stalled(T, val(1)) or overdue(T, val(2), val(3))
  end
  table.sort(cands, function(a, b)
    if left[a] ~= left[b] then return left[a] < left[b] end
    if first[a] ~= first[b] then return first[a] < first[b] end
    return a < b
  end)
  local elected = {}
  for _, c in ipairs(cands) do
    if reps.n >= limit then break end
    if not skip[c] then
      elected[#elected + 1] = c
      reps_add(reps, c)
    end
  end
  if #elected > 0 then
    redis.call('SADD', K.rackset(h, rack, K.c.reps), unpack(elected))
    redis.call('SADD', K.peers(h, K.c.reps), unpack(elected))
    -- A new representative's stall is measured from its election: it got
    -- other racks' peers only from now on.
    local marks = {}
    for _, c in ipairs(elected) do
      marks[#marks + 1] = K.peer(h, K.peerip(c), K.p.stalls)
      marks[#marks + 1] = T.now
    end
    redis.call('MSET', unpack(marks))
  end
  return #elected
end

-- datetime renders us (unix microseconds) as a stored datetime, like Go's
-- storage.FormatTime.
local function datetime(us)
  local secs = math.floor(us / 1000000)
  local frac = us - secs * 1000000
  local days = math.floor(secs / 86400)
  local sod = secs - days * 86400
  -- Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d,
    math.floor(sod / 3600), math.floor(sod % 3600 / 60), sod % 60, frac)
end

-- clock is the time of this script run, as a stored datetime and as unix
-- milliseconds. It is Redis' own TIME, so that every tracker process on one
-- Redis agrees on expiry, election order and timestamps whatever their
-- clocks say; override (unix microseconds) replaces it, for tests only.
local function clock(override)
  local us
  if override and override ~= '' then
    us = tonumber(override)
  else
    local t = redis.call('TIME')
    us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return datetime(us), math.floor(us / 1000)
end

-- each_key calls f with every key of the transfer whose keys start with h
-- (<hash>, or <datetime>:<hash> for a retired run) that may exist: found
-- from the transfer's own sets (peers:N names every peer with keys, racks
-- every rack), so the cost follows the transfer, not the keyspace. The two
-- sets themselves come last.
local function each_key(h, f)
  local peers = redis.call('SMEMBERS', K.peers(h, K.c.seen))
  local racks = redis.call('SMEMBERS', K.field(h, K.t.racks))
  local done = {}
  for _, p in ipairs(peers) do
    local ip = K.peerip(p)
    if not done[ip] then
      done[ip] = true
      for _, fld in ipairs(K.peer_fields) do f(K.peer(h, ip, fld)) end
      for _, e in ipairs(K.events) do f(K.event(h, ip, e)) end
    end
  end
  for _, rack in ipairs(racks) do
    for _, sfx in ipairs(K.rack_suffixes) do f(K.rackset(h, rack, sfx)) end
  end
  for _, fld in ipairs(K.transfer_fields) do f(K.field(h, fld)) end
  for _, fld in ipairs(K.transfer_sets) do f(K.field(h, fld)) end
end

-- unregistered_at_least reports whether n or more active transfers were
-- activated by announces alone (they have no .torrent). SCARD answers
-- below the cap; only at it are the .torrent keys counted, with one EXISTS
-- per thousand transfers.
local function unregistered_at_least(n)
  if redis.call('SCARD', K.active) < n then return false end
  local active = redis.call('SMEMBERS', K.active)
  local registered = 0
  for i = 1, #active, 1000 do
    local keys = {}
    for j = i, math.min(i + 999, #active) do keys[#keys + 1] = K.field(active[j], K.t.torrent) end
    registered = registered + redis.call('EXISTS', unpack(keys))
  end
  return #active - registered >= n
end
