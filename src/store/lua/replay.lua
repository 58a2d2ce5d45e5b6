-- Replays (SPEC §7): a new delivery of the same event, due now. A dead
-- delivery that is replayed leaves the dead set (state "replayed",
-- replayed_as), drops its body (the new delivery holds it) and expires after
-- delivery_retention like a delivered one; a settled hash without a TTL
-- (replayed by an older version) gets one here. A delivered hash has no body
-- any more: the event is read back from the stream (its stream_id, else its
-- dedup key's), and a replay fails when both are gone.
-- The new id is derived from the old one and the time.
-- ARGV[1] mode: "one" (ARGV[5] the delivery id), "dead" (ARGV[5] the
-- webhook: every dead delivery of it, at most ARGV[6]) or "range"
-- (ARGV[5] webhook, [6] at most, [7] since ms, [8] until ms, [9] wanted
-- event types ",a,b,", [10] wanted channels ",x,y," or "*"). KEYS[1] the
-- stream. ARGV[2] now (ms), [3] key prefix, [4] delivery_retention (s).
-- Returns {count, last new id} or {-1, why}.
local now, P = ARGV[2], ARGV[3]
local function fresh(seed)
  return 'dlv_' .. string.sub(redis.sha1hex(seed .. ':' .. now .. ':replay'), 1, 32)
end
local function deliver(webhook, event_id, body, sid, of)
  local id = fresh(of ~= '' and of or (webhook .. ':' .. event_id))
  redis.call('HSET', P .. 'delivery:' .. id, 'id', id, 'event_id', event_id,
    'webhook', webhook, 'state', 'pending', 'attempts', 0, 'created_ms', now,
    'due_ms', now, 'stream_id', sid, 'event', body, 'replay_of', of)
  redis.call('ZADD', P .. 'wh:' .. webhook .. ':due', now, id)
  return id
end
local function stored(sid)
  if not sid or sid == '' then return nil end
  local r = redis.call('XRANGE', KEYS[1], sid, sid)
  if #r == 0 then return nil end
  for i = 1, #r[1][2], 2 do
    if r[1][2][i] == 'event' then return r[1][2][i + 1] end
  end
  return nil
end
local function replay(old)
  local h = P .. 'delivery:' .. old
  local f = redis.call('HMGET', h, 'event_id', 'event', 'webhook', 'state', 'stream_id')
  if not f[3] or not f[4] then return nil, 'no such delivery' end
  if f[4] == 'pending' then return nil, 'the delivery is still pending' end
  local body = f[2] or stored(f[5]) or
    (f[1] and stored(redis.call('GET', P .. 'dedup:' .. f[1])))
  if not body then
    return nil, 'the event is no longer kept (the delivery dropped it once settled, and the stream trimmed it)'
  end
  local id = deliver(f[3], f[1], body, f[5] or '', old)
  if f[4] == 'dead' then
    redis.call('ZREM', P .. 'wh:' .. f[3] .. ':dead', old)
    redis.call('HSET', h, 'state', 'replayed', 'replayed_as', id)
    redis.call('HDEL', h, 'event')
    redis.call('EXPIRE', h, ARGV[4])
  else
    redis.call('HSET', h, 'replayed_as', id)
    if redis.call('TTL', h) < 0 then redis.call('EXPIRE', h, ARGV[4]) end
  end
  return id
end
if ARGV[1] == 'one' then
  local id, why = replay(ARGV[5])
  if not id then return {-1, why} end
  return {1, id}
end
local n, last = 0, ''
if ARGV[1] == 'dead' then
  local ids = redis.call('ZRANGE', P .. 'wh:' .. ARGV[5] .. ':dead', 0, tonumber(ARGV[6]) - 1)
  for _, old in ipairs(ids) do
    local id = replay(old)
    if id then n = n + 1; last = id end
  end
  return {n, last}
end
local entries = redis.call('XRANGE', KEYS[1], ARGV[7], ARGV[8], 'COUNT', tonumber(ARGV[6]))
for _, e in ipairs(entries) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  if f.event and string.find(ARGV[9], ',' .. (f.type or '') .. ',', 1, true) and
     (ARGV[10] == '*' or string.find(ARGV[10], ',' .. (f.channel or '') .. ',', 1, true)) then
    last = deliver(ARGV[5], f.id, f.event, e[1], '')
    n = n + 1
  end
end
return {n, last}
