-- The outcome of one attempt. KEYS[1] due zset, [2] delivery hash, [3] dead
-- zset. ARGV[1] id, [2] owner, [3] ok|retry|dead|probe, [4] now (ms),
-- [5] next due (ms), [6] HTTP status, [7] error text, [8] how long a
-- delivered hash is kept (s: delivery_retention). A delivered hash drops
-- its body (the stream and the event's dedup key still find the event, for a
-- replay): storage grows with the retention, not with traffic.
-- A settled delivery is left alone; a failure by an instance whose lease
-- was taken over is dropped (the new owner reports its own); a failed probe
-- spends no attempt. The last 10 attempts are kept in the hash as a JSON
-- list ("history": at_ms, outcome, status, error cut to 200 bytes) for
-- `payrelayctl deliveries show`: bounded, whatever the schedule.
local f = redis.call('HMGET', KEYS[2], 'state', 'lease_owner', 'history')
if f[1] ~= 'pending' then return 'settled' end
if ARGV[3] ~= 'ok' and f[2] ~= ARGV[2] then return 'lost' end
local ok, h = pcall(cjson.decode, f[3] or '[]')
if not ok or type(h) ~= 'table' then h = {} end
h[#h + 1] = {at_ms = tonumber(ARGV[4]), outcome = ARGV[3], status = tonumber(ARGV[6]),
  error = string.sub(ARGV[7], 1, 200)}
while #h > 10 do table.remove(h, 1) end
redis.call('HSET', KEYS[2], 'history', cjson.encode(h))
redis.call('HSET', KEYS[2], 'last_status', ARGV[6], 'last_error', ARGV[7],
  'last_attempt_ms', ARGV[4])
redis.call('HDEL', KEYS[2], 'lease_owner', 'lease_until_ms')
if ARGV[3] == 'probe' then
  redis.call('HSET', KEYS[2], 'due_ms', ARGV[5])
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
  return 'probe'
end
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
if ARGV[3] == 'ok' then
  redis.call('HSET', KEYS[2], 'state', 'delivered', 'delivered_ms', ARGV[4])
  redis.call('HDEL', KEYS[2], 'event')
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[8])
elseif ARGV[3] == 'dead' then
  redis.call('HSET', KEYS[2], 'state', 'dead', 'dead_ms', ARGV[4])
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
else
  redis.call('HSET', KEYS[2], 'due_ms', ARGV[5])
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
end
return ARGV[3]
