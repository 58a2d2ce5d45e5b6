-- The recording step. Atomic because Redis runs a script alone.
-- KEYS[1] dedup key, KEYS[2] stream, KEYS[3] registered order hash,
-- KEYS[4] the channel's poll schedule (zset), KEYS[5] the order's paid key,
-- KEYS[6] the stream's held set, then for each webhook a delivery hash and
-- that webhook's due zset. A registered order that is paid, by a new event
-- or a duplicate, is settled and kept dedup_ttl.
-- ARGV[1] event id, [2] type, [3] channel, [4] out_trade_no, [5] event JSON,
-- [6] amount_fen of a payment ("" when the event is no payment), [7] dedup
-- ttl (s), [8] stream maxlen, [9] now (ms), [10] out_trade_no (the order's
-- member in the poll schedule), [11] the gateway trade id, [12] the key
-- prefix, then per webhook: name, delivery id, wants-as-is ("1"/"0"),
-- wants-if-mismatch ("1"/"0"), first due time (ms).
-- A payment whose amount differs from the registered order's becomes
-- order.amount_mismatch; a payment of an order whose paid key names another
-- trade id is a repeat payment (the money moved twice). Either rewrites the
-- JSON's fixed head {"id":…,"type":"order.paid", (event.h), so the event is
-- built and sent once. The paid key keeps the first payment's trade id; a
-- repeat only extends its life, so a third payment compares with the first.
-- A repeat leaves an order that is already paid as the first payment left it.
-- The event JSON is stored once, in the stream: a delivery names its entry
-- (stream_id) and the claim reads the body from there. So that trimming the
-- stream never loses a body a delivery still needs, each delivery made here
-- is a member "<stream id> <delivery id>" of the held set (scored by the
-- entry's ms), and the stream is trimmed here, exactly, in batches of
-- TRIM_BATCH entries beyond maxlen: a pending or dead delivery of an entry
-- about to go gets the body copied into its hash first.
-- The last two keys are the event's delivery list (a string: the ids of the
-- deliveries made here, space-separated; one SET with its TTL, where a set
-- would need SADD and EXPIRE and three times the memory) and the order's
-- event index (a zset of event ids by record time), both living dedup_ttl: every event of a merchant order, registered
-- or not, is found from the index (GET /v1/events?out_trade_no=), and its
-- deliveries from the set (GET /v1/events/ID/deliveries).
-- Returns {"new", stream id, type, deliveries, first trade id or ""} or
-- {"dup", stream id}.
local TRIM_BATCH = 100
-- At most this many entries per call: a maxlen lowered on a long stream is
-- reached over the next records, none of which holds Redis for long.
local TRIM_MAX = 1000
local prev = redis.call('GET', KEYS[1])
if prev then
  if ARGV[6] ~= '' and redis.call('HGET', KEYS[3], 'state') == 'pending' then
    redis.call('HSET', KEYS[3], 'state', 'paid', 'event_id', ARGV[1], 'paid_at_ms', ARGV[9])
    redis.call('ZREM', KEYS[4], ARGV[10])
    redis.call('EXPIRE', KEYS[3], ARGV[7])
  end
  return {'dup', prev}
end
local etype, body, order = ARGV[2], ARGV[5], false
local paid, mismatch, first = ARGV[6] ~= '', false, false
local o = {false, false}
if paid then
  o = redis.call('HMGET', KEYS[3], 'amount_fen', 'state')
  first = redis.call('GET', KEYS[5])
  if first == ARGV[11] then first = false end
end
if o[1] or o[2] then
  order = true
  local want = o[1]
  if want and want ~= '' and tonumber(want) ~= tonumber(ARGV[6]) then mismatch = true end
end
if mismatch or first then
  local head = '{"id":"' .. ARGV[1] .. '","type":"order.paid",'
  if string.sub(body, 1, #head) ~= head then
    return redis.error_reply('payrelay: event JSON head is not id, type')
  end
  local flags = ''
  if mismatch then
    etype = 'order.amount_mismatch'
    flags = '"amount_mismatch":true,'
  end
  if first then flags = flags .. '"repeat_payment":true,' end
  body = '{"id":"' .. ARGV[1] .. '","type":"' .. etype .. '",' .. flags ..
    string.sub(body, #head + 1)
end
-- Is stream id a later than b? ("ms-seq")
local function later(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  return am > bm or (am == bm and tonumber(as) > tonumber(bs))
end
-- Trims the `over` oldest of the `len` entries, keeping the bodies still
-- needed.
local function trim(len, over)
  local gone = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', over)
  if #gone == 0 then return end
  local bodies, last = {}, gone[#gone][1]
  for _, e in ipairs(gone) do
    for i = 1, #e[2], 2 do
      if e[2][i] == 'event' then bodies[e[1]] = e[2][i + 1] end
    end
  end
  local ms, drop = string.match(last, '^(%d+)'), {}
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', ms)) do
    local s, d = string.match(m, '^(%S+) (%S+)$')
    if not s or not later(s, last) then
      if s and bodies[s] then
        local h = ARGV[12] .. 'delivery:' .. d
        local f = redis.call('HMGET', h, 'state', 'event')
        if (f[1] == 'pending' or f[1] == 'dead') and not f[2] then
          redis.call('HSET', h, 'event', bodies[s])
        end
      end
      drop[#drop + 1] = m
    end
  end
  for i = 1, #drop, 100 do
    redis.call('ZREM', KEYS[6], unpack(drop, i, math.min(i + 99, #drop)))
  end
  redis.call('XTRIM', KEYS[2], 'MAXLEN', len - #gone)
end
local sid = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1],
  'type', etype, 'channel', ARGV[3], 'out_trade_no', ARGV[4], 'event', body)
local len = redis.call('XLEN', KEYS[2])
local over = len - tonumber(ARGV[8])
if over >= TRIM_BATCH then trim(len, math.min(over, TRIM_MAX)) end
redis.call('SET', KEYS[1], sid, 'EX', ARGV[7])
redis.call('ZADD', KEYS[#KEYS], ARGV[9], ARGV[1])
redis.call('EXPIRE', KEYS[#KEYS], ARGV[7])
if first then
  redis.call('EXPIRE', KEYS[5], ARGV[7])
elseif paid then
  redis.call('SET', KEYS[5], ARGV[11], 'EX', ARGV[7], 'NX')
end
if order and not (first and o[2] == 'paid') then
  redis.call('HSET', KEYS[3], 'state', 'paid', 'event_id', ARGV[1], 'paid_at_ms', ARGV[9])
  redis.call('ZREM', KEYS[4], ARGV[10])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
local n, held, dids = 0, {}, {}
for i = 0, (#ARGV - 12) / 5 - 1 do
  local a = 13 + i * 5
  local wants = ARGV[a + 2]
  if mismatch then wants = ARGV[a + 3] end
  if wants == '1' then
    redis.call('HSET', KEYS[7 + i * 2], 'id', ARGV[a + 1], 'event_id', ARGV[1],
      'webhook', ARGV[a], 'state', 'pending', 'attempts', 0, 'created_ms', ARGV[9],
      'due_ms', ARGV[a + 4], 'stream_id', sid)
    redis.call('ZADD', KEYS[8 + i * 2], ARGV[a + 4], ARGV[a + 1])
    held[#held + 1] = string.match(sid, '^(%d+)')
    held[#held + 1] = sid .. ' ' .. ARGV[a + 1]
    dids[#dids + 1] = ARGV[a + 1]
    n = n + 1
  end
end
if n > 0 then
  redis.call('SET', KEYS[#KEYS - 1], table.concat(dids, ' '), 'EX', ARGV[7])
  redis.call('ZADD', KEYS[6], unpack(held))
end
return {'new', sid, etype, n, first or ''}
