-- activate registers transfer h with its metainfo. A transfer that is
-- active already keeps running: when announces alone activated it (it has
-- no .torrent) the metainfo and the .torrent are attached to it.
-- Returns 1 (activated), 2 (attached), or 0 when h is active with a
-- .torrent already.
local h, name, length, torrent = ARGV[1], ARGV[3], ARGV[4], ARGV[5]
local now = clock(ARGV[2])
if redis.call('SISMEMBER', K.active, h) == 1 then
  if redis.call('EXISTS', K.field(h, K.t.torrent)) == 1 then return 0 end
  redis.call('MSET', K.field(h, K.t.name), name, K.field(h, K.t.length), length, K.field(h, K.t.torrent), torrent)
  return 2
end
redis.call('SADD', K.transfers, h)
redis.call('SADD', K.active, h)
redis.call('MSET', K.field(h, K.t.registered), now, K.field(h, K.t.name), name,
  K.field(h, K.t.length), length, K.field(h, K.t.torrent), torrent)
return 1
