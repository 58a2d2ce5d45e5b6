-- The outcomes of attempts, several in one call (those of one loop turn).
-- No KEYS: the keys are built from the prefix (Redis Cluster is not
-- supported anyway). ARGV[1] key prefix, [2] owner, [3] now (ms), [4] how
-- long a delivered hash is kept (s: delivery_retention), then per outcome:
-- webhook, delivery id, ok|retry|dead|probe, next due (ms), HTTP status,
-- error text. Returns one answer per outcome, in order: the outcome, or
-- "settled" or "lost".
-- A delivered hash drops its body if it had one (a replay's; the stream and
-- the event's dedup key still find the event, for a replay): storage grows
-- with the retention, not with traffic.
-- A settled delivery is left alone; a failure by an instance whose lease
-- was taken over is dropped (the new owner reports its own); a failed probe
-- spends no attempt. The last 10 attempts are kept in the hash as a JSON
-- list ("history": at_ms, outcome, status, error cut to 200 bytes and left
-- out when empty, so that the hash of a delivery made at its first attempt
-- stays small enough for Redis's compact encoding) for `payrelayctl
-- deliveries show`: bounded, whatever the schedule.
local P, owner, now = ARGV[1], ARGV[2], ARGV[3]
local function finish(webhook, id, outcome, due, status, err)
  local h = P .. 'delivery:' .. id
  local dkey = P .. 'wh:' .. webhook .. ':due'
  local f = redis.call('HMGET', h, 'state', 'lease_owner', 'history', 'attempts', 'event')
  if f[1] ~= 'pending' then return 'settled' end
  if outcome ~= 'ok' and f[2] ~= owner then return 'lost' end
  local ok, hist = pcall(cjson.decode, f[3] or '[]')
  if not ok or type(hist) ~= 'table' then hist = {} end
  local entry = {at_ms = tonumber(now), outcome = outcome, status = tonumber(status)}
  if err ~= '' then entry.error = string.sub(err, 1, 200) end
  hist[#hist + 1] = entry
  while #hist > 10 do table.remove(hist, 1) end
  local set = {'history', cjson.encode(hist), 'last_status', status, 'last_error', err,
    'last_attempt_ms', now}
  if outcome == 'ok' and f[5] then
    redis.call('HDEL', h, 'lease_owner', 'lease_until_ms', 'event')
  else
    redis.call('HDEL', h, 'lease_owner', 'lease_until_ms')
  end
  if outcome == 'probe' then
    set[#set + 1] = 'due_ms'; set[#set + 1] = due
    redis.call('HSET', h, unpack(set))
    redis.call('ZADD', dkey, due, id)
    return 'probe'
  end
  set[#set + 1] = 'attempts'; set[#set + 1] = (tonumber(f[4]) or 0) + 1
  if outcome == 'ok' then
    set[#set + 1] = 'state'; set[#set + 1] = 'delivered'
    set[#set + 1] = 'delivered_ms'; set[#set + 1] = now
    redis.call('HSET', h, unpack(set))
    redis.call('ZREM', dkey, id)
    redis.call('EXPIRE', h, ARGV[4])
  elseif outcome == 'dead' then
    set[#set + 1] = 'state'; set[#set + 1] = 'dead'
    set[#set + 1] = 'dead_ms'; set[#set + 1] = now
    redis.call('HSET', h, unpack(set))
    redis.call('ZREM', dkey, id)
    redis.call('ZADD', P .. 'wh:' .. webhook .. ':dead', now, id)
  else
    set[#set + 1] = 'due_ms'; set[#set + 1] = due
    redis.call('HSET', h, unpack(set))
    redis.call('ZADD', dkey, due, id)
  end
  return outcome
end
local out = {}
for a = 5, #ARGV - 5, 6 do
  out[#out + 1] = finish(ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4],
    ARGV[a + 5])
end
return out
