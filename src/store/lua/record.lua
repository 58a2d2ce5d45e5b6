-- The recording step. Atomic because Redis runs a script alone.
-- One call records every callback of one loop turn (up to
-- STORE_RECORD_BATCH, store_record.c): ARGV[1] is their count n,
-- ARGV[2..n+1] each one's webhook count h, then each one's keys (8 + 2h, below) follow one
-- another in KEYS, and their arguments (13 + 6h) in ARGV after the counts.
-- The answer is one answer per record, in order. Each record below is
-- described as if it were alone (K: its keys, A: its arguments).
-- K[1] dedup key, K[2] stream, K[3] registered order hash,
-- K[4] the channel's poll schedule (zset), K[5] the order's paid key,
-- K[6] the stream's held set, then for each webhook a delivery hash and
-- that webhook's due zset. A registered order that is paid, by a new event
-- or a duplicate, is settled and kept dedup_ttl.
-- A[1] event id, [2] type, [3] channel, [4] out_trade_no, [5] event JSON,
-- [6] amount_fen of a payment ("" when the event is no payment), [7] dedup
-- ttl (s), [8] stream maxlen, [9] now (ms), [10] out_trade_no (the order's
-- member in the poll schedule), [11] the gateway trade id, [12] the key
-- prefix, [13] the lease owner (payrelayd's instance id; "" when no webhook
-- has a lease), then per webhook: name, delivery id, wants-as-is ("1"/"0"),
-- wants-if-mismatch ("1"/"0"), first due time (ms), lease end (ms) or "".
-- Claim at record: a delivery made with a lease end is made already claimed
-- by [13], exactly as delivery_claim.lua leaves one (lease_owner,
-- lease_until_ms, due score the lease end: if payrelayd dies it is due
-- again then), and the answer names it, so payrelayd starts its first
-- attempt from this answer without a claim call.
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
-- Answers {"new", stream id, type, deliveries, first trade id or "",
-- {webhook index (0-based), delivery id, ...} of those claimed here, the
-- stored JSON when it was rewritten and one was claimed here, else ""},
-- {"dup", stream id} or {"error", text} (that record only).
local TRIM_BATCH = 100
-- At most this many entries per call: a maxlen lowered on a long stream is
-- reached over the next records, none of which holds Redis for long.
local TRIM_MAX = 1000
-- Is stream id a later than b? ("ms-seq")
local function later(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  return am > bm or (am == bm and tonumber(as) > tonumber(bs))
end
-- Trims the `over` oldest of the `len` entries, keeping the bodies still
-- needed. Returns the stream's length after.
local function trim(K, A, len, over)
  local gone = redis.call('XRANGE', K[2], '-', '+', 'COUNT', over)
  if #gone == 0 then return len end
  local bodies, last = {}, gone[#gone][1]
  for _, e in ipairs(gone) do
    for i = 1, #e[2], 2 do
      if e[2][i] == 'event' then bodies[e[1]] = e[2][i + 1] end
    end
  end
  local ms, drop = string.match(last, '^(%d+)'), {}
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', K[6], '-inf', ms)) do
    local s, d = string.match(m, '^(%S+) (%S+)$')
    if not s or not later(s, last) then
      if s and bodies[s] then
        local h = A[12] .. 'delivery:' .. d
        local f = redis.call('HMGET', h, 'state', 'event')
        if (f[1] == 'pending' or f[1] == 'dead') and not f[2] then
          redis.call('HSET', h, 'event', bodies[s])
        end
      end
      drop[#drop + 1] = m
    end
  end
  for i = 1, #drop, 100 do
    redis.call('ZREM', K[6], unpack(drop, i, math.min(i + 99, #drop)))
  end
  redis.call('XTRIM', K[2], 'MAXLEN', len - #gone)
  return len - #gone
end
-- The stream's length, by stream key: read once per call, then counted
-- (nothing else writes the stream while the script runs).
local lens = {}
local function record(K, A)
  local prev = redis.call('GET', K[1])
  if prev then
    if A[6] ~= '' and redis.call('HGET', K[3], 'state') == 'pending' then
      redis.call('HSET', K[3], 'state', 'paid', 'event_id', A[1], 'paid_at_ms', A[9])
      redis.call('ZREM', K[4], A[10])
      redis.call('EXPIRE', K[3], A[7])
    end
    return {'dup', prev}
  end
  local etype, body, order = A[2], A[5], false
  local paid, mismatch, first = A[6] ~= '', false, false
  local o = {false, false}
  if paid then
    o = redis.call('HMGET', K[3], 'amount_fen', 'state')
    first = redis.call('GET', K[5])
    if first == A[11] then first = false end
  end
  if o[1] or o[2] then
    order = true
    local want = o[1]
    if want and want ~= '' and tonumber(want) ~= tonumber(A[6]) then mismatch = true end
  end
  if mismatch or first then
    local head = '{"id":"' .. A[1] .. '","type":"order.paid",'
    if string.sub(body, 1, #head) ~= head then
      return {'error', 'payrelay: event JSON head is not id, type'}
    end
    local flags = ''
    if mismatch then
      etype = 'order.amount_mismatch'
      flags = '"amount_mismatch":true,'
    end
    if first then flags = flags .. '"repeat_payment":true,' end
    body = '{"id":"' .. A[1] .. '","type":"' .. etype .. '",' .. flags ..
      string.sub(body, #head + 1)
  end
  local sid = redis.call('XADD', K[2], '*', 'id', A[1],
    'type', etype, 'channel', A[3], 'out_trade_no', A[4], 'event', body)
  local len = lens[K[2]]
  if len then len = len + 1 else len = redis.call('XLEN', K[2]) end
  local over = len - tonumber(A[8])
  if over >= TRIM_BATCH then len = trim(K, A, len, math.min(over, TRIM_MAX)) end
  lens[K[2]] = len
  redis.call('SET', K[1], sid, 'EX', A[7])
  redis.call('ZADD', K[#K], A[9], A[1])
  redis.call('EXPIRE', K[#K], A[7])
  if first then
    redis.call('EXPIRE', K[5], A[7])
  elseif paid then
    redis.call('SET', K[5], A[11], 'EX', A[7], 'NX')
  end
  if order and not (first and o[2] == 'paid') then
    redis.call('HSET', K[3], 'state', 'paid', 'event_id', A[1], 'paid_at_ms', A[9])
    redis.call('ZREM', K[4], A[10])
    redis.call('EXPIRE', K[3], A[7])
  end
  local n, held, dids, claimed = 0, {}, {}, {}
  for i = 0, (#A - 13) / 6 - 1 do
    local a = 14 + i * 6
    local wants = A[a + 2]
    if mismatch then wants = A[a + 3] end
    if wants == '1' then
      local f, due = {'id', A[a + 1], 'event_id', A[1], 'webhook', A[a],
        'state', 'pending', 'attempts', 0, 'created_ms', A[9], 'due_ms', A[a + 4],
        'stream_id', sid}, A[a + 4]
      if A[a + 5] ~= '' then
        -- claimed at record (see the head)
        local m = #f
        due = A[a + 5]
        f[m + 1], f[m + 2], f[m + 3], f[m + 4] = 'lease_owner', A[13], 'lease_until_ms', due
        claimed[#claimed + 1] = i
        claimed[#claimed + 1] = A[a + 1]
      end
      redis.call('HSET', K[7 + i * 2], unpack(f))
      redis.call('ZADD', K[8 + i * 2], due, A[a + 1])
      held[#held + 1] = string.match(sid, '^(%d+)')
      held[#held + 1] = sid .. ' ' .. A[a + 1]
      dids[#dids + 1] = A[a + 1]
      n = n + 1
    end
  end
  if n > 0 then
    redis.call('SET', K[#K - 1], table.concat(dids, ' '), 'EX', A[7])
    redis.call('ZADD', K[6], unpack(held))
  end
  -- The first attempt sends the stored bytes: the caller's JSON, unless
  -- rewritten above.
  if #claimed == 0 or not (mismatch or first) then body = '' end
  return {'new', sid, etype, n, first or '', claimed, body}
end
local n, out, k = tonumber(ARGV[1]), {}, 1
local a = n + 2
for i = 1, n do
  local h = tonumber(ARGV[1 + i])
  local nk, na = 8 + 2 * h, 13 + 6 * h
  out[i] = record({unpack(KEYS, k, k + nk - 1)}, {unpack(ARGV, a, a + na - 1)})
  k, a = k + nk, a + na
end
return out
