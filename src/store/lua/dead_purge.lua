-- Purging dead deliveries (SPEC §3.2), one bounded batch: KEYS[1] the
-- webhook's dead zset. ARGV[1] before (ms: those that died earlier go),
-- [2] how many at most, [3] key prefix. Each hash goes, and every index
-- entry naming it: the dead set and its event's delivery list (a string of
-- space-separated ids, or a set as earlier builds wrote it; an emptied list
-- goes). A member whose hash is gone already, or is no longer dead,
-- only leaves the set.
-- Returns {purged, 1 when more died before ARGV[1] else 0}.
local P = ARGV[3]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0,
  tonumber(ARGV[2]))
local function unlist(k, id)
  local t = redis.call('TYPE', k).ok
  if t == 'set' then
    redis.call('SREM', k, id)
  elseif t == 'string' then
    local left = {}
    for d in string.gmatch(redis.call('GET', k), '%S+') do
      if d ~= id then left[#left + 1] = d end
    end
    if #left == 0 then
      redis.call('DEL', k)
    else
      local ttl = redis.call('PTTL', k)
      if ttl > 0 then
        redis.call('SET', k, table.concat(left, ' '), 'PX', ttl)
      else
        redis.call('SET', k, table.concat(left, ' '))
      end
    end
  end
end
local n = 0
for _, id in ipairs(ids) do
  local h = P .. 'delivery:' .. id
  local f = redis.call('HMGET', h, 'state', 'event_id')
  if f[1] == 'dead' then
    if f[2] then unlist(P .. 'evd:' .. f[2], id) end
    redis.call('DEL', h)
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], id)
end
local more = 0
if redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1]) > 0 then more = 1 end
return {n, more}
