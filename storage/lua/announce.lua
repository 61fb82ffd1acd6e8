-- announce records one announce of transfer h atomically: activation on
-- the fly, the peer's keys, the class sets and counters, timestamps,
-- representative stall, demotion and election. It then samples the
-- candidate peers of each class the handout may draw from, so that an
-- announce is one round trip.
--
-- Returns {status, complete, incomplete, role, escape, elected, demoted,
--          pool1 .. pool7}
-- status: ok | unregistered | unknown (stopped for an inactive transfer)
-- role:   S seeder | R representative leecher | L leecher | X stopped
-- pools (see storage.Pool): own seeders, own representatives, own leechers,
-- other racks' seeders, other racks' representatives, all seeders, all
-- leechers. With peer ids, each pool alternates peer and peer_id.
local h, ip, port, peer = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local peer_id, pkey, event = ARGV[5], ARGV[6], ARGV[7]
local uploaded, downloaded, left = ARGV[8], ARGV[9], ARGV[10]
local compact, rack, host = ARGV[11], ARGV[12], ARGV[13]
local now, nowms = clock(ARGV[14])
local allow = ARGV[15] == '1'
local limit, stall_limit = tonumber(ARGV[16]), tonumber(ARGV[17])
local sample, mode, with_ids = tonumber(ARGV[18]), ARGV[19], ARGV[20] == '1'

if redis.call('SISMEMBER', K.active, h) == 0 then
  if not allow then return {'unregistered'} end
  -- A stop for a transfer nobody runs activates nothing.
  if event == 'stopped' then return {'unknown'} end
  redis.call('SADD', K.transfers, h)
  redis.call('SADD', K.active, h)
  redis.call('SET', K.field(h, 'registered'), now)
end

local function pk(f) return K.peer(h, ip, f) end
local old = redis.call('MGET', pk('port'), pk('rack'), pk('left'))
local oldport, oldrack, oldleft = old[1], old[2], old[3]

-- A host that comes back on another port, or in another rack after a rack
-- map reload, replaces its old member everywhere.
local keeprep = false
if oldport and (oldport ~= port or oldrack ~= rack) then
  local op = K.peerstr(ip, oldport)
  local wasrep = leave_current(h, oldrack, op)
  keeprep = wasrep and oldrack == rack
  if oldport ~= port then
    -- Every set: the host may have been seen in several racks.
    redis.call('SREM', K.peers(h, 'N'), op)
    for _, r in ipairs(redis.call('SMEMBERS', K.field(h, 'racks'))) do
      redis.call('SREM', K.rackset(h, r, 'N'), op)
    end
  end
  if oldrack and oldrack ~= rack then
    -- The slot it held in its old rack is filled at once, not at that
    -- rack's next announce.
    elect(h, oldrack, limit, stall_limit)
  end
end

local nleft = tonumber(left)
local seeder = nleft == 0
local fields = {
  pk('compact'), compact, pk('port'), port, pk('peer_id'), peer_id, pk('key'), pkey,
  pk('seeder'), seeder and 'True' or 'False',
  pk('downloaded'), downloaded, pk('left'), left, pk('uploaded'), uploaded,
  pk('rack'), rack, pk('hostname'), host,
  K.field(h, 'last_announce'), now,
}
if event ~= '' then
  fields[#fields + 1] = pk('last_event'); fields[#fields + 1] = event
  fields[#fields + 1] = K.event(h, ip, event); fields[#fields + 1] = now
end
redis.call('MSET', unpack(fields))

redis.call('SADD', K.racks, rack)
redis.call('SADD', K.rack(rack), host)
redis.call('SADD', K.field(h, 'racks'), rack)
redis.call('SADD', K.peers(h, 'N'), peer)
redis.call('SADD', K.rackset(h, rack, 'N'), peer)

if event == 'stopped' then
  leave_current(h, rack, peer)
  redis.call('ZREM', K.field(h, 'seen'), ip)
  local elected = elect(h, rack, limit, stall_limit)
  return {'ok', counter(K.field(h, 'complete')), counter(K.field(h, 'incomplete')), 'X', 0, elected, 0}
end

redis.call('ZADD', K.field(h, 'seen'), nowms, ip)
local rs, rr, rl = K.rackset(h, rack, 'S'), K.rackset(h, rack, 'R'), K.rackset(h, rack, 'left')
if seeder then
  if redis.call('SADD', K.peers(h, 'S'), peer) == 1 then redis.call('INCR', K.field(h, 'complete')) end
  if redis.call('SREM', K.peers(h, 'L'), peer) == 1 then redis.call('DECR', K.field(h, 'incomplete')) end
  redis.call('SADD', rs, peer)
  redis.call('ZREM', rl, peer)
  redis.call('ZREM', K.rackset(h, rack, 'since'), peer)
else
  if redis.call('SADD', K.peers(h, 'L'), peer) == 1 then redis.call('INCR', K.field(h, 'incomplete')) end
  if redis.call('SREM', K.peers(h, 'S'), peer) == 1 then redis.call('DECR', K.field(h, 'complete')) end
  redis.call('SREM', rs, peer)
  redis.call('ZADD', rl, nleft, peer)
  redis.call('ZADD', K.rackset(h, rack, 'since'), 'NX', nowms, peer)
end
if keeprep then
  redis.call('SADD', K.peers(h, 'R'), peer)
  redis.call('SADD', rr, peer)
end

if event == 'started' then
  redis.call('SETNX', K.field(h, 'first_started'), now)
  redis.call('SET', K.field(h, 'last_started'), now)
elseif event == 'completed' then
  redis.call('SETNX', K.field(h, 'first_completed'), now)
  redis.call('SET', K.field(h, 'last_completed'), now)
  redis.call('INCR', K.field(h, 'completions'))
end

-- Progress: a rack stalls when none of its leechers' left shrinks; a
-- representative stalls when its own left does not shrink while its rack
-- has no seeder to fetch from instead.
local isrep = redis.call('SISMEMBER', rr, peer) == 1
local demoted = 0
-- Before any seeder exists nobody can be blamed for not progressing: nobody
-- stalls then, or leechers that start before their origin would all end up
-- unelectable.
if not seeder and oldleft then
  local progressed = nleft < tonumber(oldleft)
  local rstalls = K.rackset(h, rack, 'stalls')
  if progressed then
    redis.call('SET', rstalls, 0)
    redis.call('DEL', pk('stalls'))
  elseif redis.call('EXISTS', K.peers(h, 'S')) == 1 then
    redis.call('INCR', rstalls)
    if isrep and redis.call('EXISTS', rs) == 0 then
      if redis.call('INCR', pk('stalls')) >= stall_limit then
        demote(h, rack, peer)
        isrep = false
        demoted = 1
      end
    end
  end
end

-- A paused peer (BEP 21) downloads nothing more: it cannot fetch for its
-- rack, so it gives up the role and is not elected while paused.
if event == 'paused' and not seeder then
  redis.call('SET', pk('stalls'), stall_limit)
  if isrep then
    demote(h, rack, peer)
    isrep = false
    demoted = 1
  end
end

local elected = elect(h, rack, limit, stall_limit)
if elected > 0 and not isrep then isrep = redis.call('SISMEMBER', rr, peer) == 1 end

local role = 'L'
if seeder then role = 'S' elseif isrep then role = 'R' end

local escape = 0
if role == 'L' then
  if redis.call('EXISTS', rs) == 0 and redis.call('EXISTS', rr) == 0 then
    escape = 1
  elseif counter(K.rackset(h, rack, 'stalls')) >= stall_limit * math.max(redis.call('ZCARD', rl), 1) then
    escape = 1
  end
end

-- others returns up to n members of the global set key, drawn at random,
-- that are not in the asker's rack (not in the rack's set rackkey) nor, when
-- given, in the set skip. Twice n are drawn, for those filtered out.
local function others(key, rackkey, n, skip)
  local out = {}
  for _, m in ipairs(redis.call('SRANDMEMBER', key, 2 * n)) do
    if #out >= n then break end
    if redis.call('SISMEMBER', rackkey, m) == 0 and (not skip or redis.call('SISMEMBER', skip, m) == 0) then
      out[#out + 1] = m
    end
  end
  return out
end

local pools = {{}, {}, {}, {}, {}, {}, {}}
if sample > 0 then
  if mode == 'random' then
    if not seeder then pools[6] = redis.call('SRANDMEMBER', K.peers(h, 'S'), sample) end
    pools[7] = redis.call('SRANDMEMBER', K.peers(h, 'L'), sample)
  else
    if not seeder then
      pools[1] = redis.call('SRANDMEMBER', rs, sample)
      pools[2] = redis.call('SMEMBERS', rr)
    end
    pools[3] = redis.call('ZRANDMEMBER', rl, sample)
    local remote = role == 'R' or escape == 1
    if remote then
      pools[4] = others(K.peers(h, 'S'), rs, sample, nil)
      pools[5] = others(K.peers(h, 'R'), rr, sample, nil)
    elseif seeder then
      -- A seeder wants nothing from another seeder: representatives that
      -- completed are left out.
      pools[5] = others(K.peers(h, 'R'), rr, sample, K.peers(h, 'S'))
    end
  end
  if with_ids then
    for i, pool in ipairs(pools) do
      local pairs_ = {}
      for _, p in ipairs(pool) do
        pairs_[#pairs_ + 1] = p
        pairs_[#pairs_ + 1] = redis.call('GET', K.peer(h, K.peerip(p), 'peer_id')) or ''
      end
      pools[i] = pairs_
    end
  end
end

return {'ok', counter(K.field(h, 'complete')), counter(K.field(h, 'incomplete')), role, escape, elected, demoted,
  pools[1], pools[2], pools[3], pools[4], pools[5], pools[6], pools[7]}
