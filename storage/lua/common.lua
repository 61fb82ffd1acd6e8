-- Shared by every script. keys.go's luaKeys (the K table) comes before it.
-- Scripts address keys they derive from data (racks, peers), which is why
-- the store needs a standalone Redis: a cluster would refuse them.

-- leave_current removes peer p of rack from every "current" set of transfer
-- h (seeders, leechers, representatives), keeping the counters in step. It
-- returns whether p was a representative. Membership in N is left alone:
-- N is every peer seen.
local function leave_current(h, rack, p)
  if redis.call('SREM', K.peers(h, 'S'), p) == 1 then redis.call('DECR', K.field(h, 'complete')) end
  if redis.call('SREM', K.peers(h, 'L'), p) == 1 then redis.call('DECR', K.field(h, 'incomplete')) end
  local wasrep = redis.call('SREM', K.peers(h, 'R'), p) == 1
  if rack then
    redis.call('SREM', K.rackset(h, rack, 'S'), p)
    redis.call('SREM', K.rackset(h, rack, 'R'), p)
    redis.call('ZREM', K.rackset(h, rack, 'left'), p)
    redis.call('ZREM', K.rackset(h, rack, 'since'), p)
  end
  return wasrep
end

-- demote takes peer p out of the representatives of rack; its stalls (or a
-- pause) keep it from being elected again until it progresses.
local function demote(h, rack, p)
  redis.call('SREM', K.rackset(h, rack, 'R'), p)
  redis.call('SREM', K.peers(h, 'R'), p)
end

-- elect fills the free representative slots of rack with its current
-- leechers of most progress (least left), the first to have announced among
-- equals, skipping peers that stalled as representatives until they
-- progress again. Returns how many it elected.
local function elect(h, rack, limit, stall_limit)
  local rk = K.rackset(h, rack, 'R')
  local reps = redis.call('SCARD', rk)
  if reps >= limit then return 0 end
  local elected = 0
  -- A bounded window: representatives and stalled peers are the only ones
  -- skipped, and a rack rarely holds 64 of them.
  local window = redis.call('ZRANGE', K.rackset(h, rack, 'left'), 0, 63, 'WITHSCORES')
  if #window == 128 then
    -- Redis orders equal scores by member text: take every tie at the
    -- window's edge, so that arrival order, not address, decides among them
    -- (at a transfer's start every leecher has the same left).
    window = redis.call('ZRANGEBYSCORE', K.rackset(h, rack, 'left'), '-inf', window[128], 'WITHSCORES')
  end
  local since = K.rackset(h, rack, 'since')
  local cands, left, first = {}, {}, {}
  for i = 1, #window, 2 do
    local c = window[i]
    cands[#cands + 1] = c
    left[c] = tonumber(window[i + 1])
    first[c] = tonumber(redis.call('ZSCORE', since, c) or 0)
  end
  table.sort(cands, function(a, b)
    if left[a] ~= left[b] then return left[a] < left[b] end
    if first[a] ~= first[b] then return first[a] < first[b] end
    return a < b
  end)
  for _, c in ipairs(cands) do
    if reps >= limit then break end
    if redis.call('SISMEMBER', rk, c) == 0 then
      local stalls = tonumber(redis.call('GET', K.peer(h, K.peerip(c), 'stalls')) or 0)
      if stalls < stall_limit then
        redis.call('SADD', rk, c)
        redis.call('SADD', K.peers(h, 'R'), c)
        reps = reps + 1
        elected = elected + 1
      end
    end
  end
  return elected
end

local function counter(key)
  return tonumber(redis.call('GET', key) or 0)
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
