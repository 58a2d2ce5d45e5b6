-- A refund, before the gateway is asked (SPEC §10.3, docs/payments.md).
-- KEYS[1] the refund hash (refund:{channel}:{refund_id}), [2] the stream.
-- ARGV[1] the key prefix, [2] channel, [3] refund_id, [4] out_trade_no
-- ("" when asked by trade id), [5] trade_no ("" when asked by
-- out_trade_no), [6] the id of trade_no's payment event ("" unless by
-- trade_no), [7] amount_fen, [8] now (ms), [9] how long refunds are kept (s).
-- The payment is found from what recorded it: by trade_no, its event; by
-- out_trade_no, the order's event index (the first payment, as the paid key
-- names it). What it paid is the event's paid_amount_fen. The refunds of one
-- payment are the fields of its rft:{channel}:{trade_no} hash (refund_id:
-- amount_fen), claims in flight and refunds of unknown outcome included, so
-- two refunds racing never give back more than was paid.
-- Returns {what, state, out_trade_no, trade_no, amount_fen, paid_fen,
-- refunded_fen, created_ms, answer}, all strings, what being:
-- "exists" (refund_id was used: its hash's fields), "no_order" (no payment
-- and no registered order), "unpaid" (a registered order without payment:
-- state is its state), "trimmed" (the payment's event left the stream),
-- "over" (amount_fen > paid_fen - refunded_fen) or "claimed" (the refund is
-- now pending: ask the gateway).
local function answer(what, state, otn, tn, amount, paid, refunded, created, text)
  return {what, state or '', otn or '', tn or '', tostring(amount or ''),
    tostring(paid or ''), tostring(refunded or ''), tostring(created or ''), text or ''}
end

local prefix, channel = ARGV[1], ARGV[2]
local f = redis.call('HMGET', KEYS[1], 'state', 'out_trade_no', 'trade_no', 'amount_fen',
  'paid_fen', 'refunded_fen', 'created_ms', 'answer')
if f[1] then
  return answer('exists', f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8])
end

-- The JSON of the event `id` (nil when never recorded or expired; false
-- when trimmed from the stream).
local function event_json(id)
  local sid = redis.call('GET', prefix .. 'dedup:' .. id)
  if not sid then return nil end
  local r = redis.call('XRANGE', KEYS[2], sid, sid)
  if #r == 0 then return false end
  for j = 1, #r[1][2], 2 do
    if r[1][2][j] == 'event' then return r[1][2][j + 1] end
  end
  return false
end

local function is_payment(ev)
  return type(ev) == 'table' and (ev.type == 'order.paid' or ev.type == 'order.amount_mismatch')
    and ev.channel == channel and ev.test ~= true
end

local ev, trimmed = nil, false
if ARGV[5] ~= '' then
  local body = event_json(ARGV[6])
  if body == false then trimmed = true
  elseif body then
    local ok, e = pcall(cjson.decode, body)
    if ok and is_payment(e) and e.trade_no == ARGV[5] then ev = e end
  end
else
  local first = redis.call('GET', prefix .. 'paid:' .. channel .. ':' .. ARGV[4])
  local ids = redis.call('ZRANGE', prefix .. 'oix:' .. channel .. ':' .. ARGV[4], 0, 99)
  for _, id in ipairs(ids) do
    local body = event_json(id)
    if body == false then trimmed = true
    elseif body then
      local ok, e = pcall(cjson.decode, body)
      if ok and is_payment(e) and e.out_trade_no == ARGV[4] then
        if not first or e.trade_no == first then ev = e; break end
        if not ev then ev = e end
      end
    end
  end
end
if not ev then
  if trimmed then return answer('trimmed') end
  if ARGV[4] ~= '' then
    local state = redis.call('HGET', prefix .. 'order:' .. channel .. ':' .. ARGV[4], 'state')
    if state then return answer('unpaid', state, ARGV[4]) end
  end
  return answer('no_order')
end

local paid = tonumber(ev.paid_amount_fen) or tonumber(ev.amount_fen) or 0
local rft = prefix .. 'rft:' .. channel .. ':' .. ev.trade_no
local refunded = 0
for _, v in ipairs(redis.call('HVALS', rft)) do refunded = refunded + (tonumber(v) or 0) end
local amount = tonumber(ARGV[7])
if amount + refunded > paid then
  return answer('over', '', ev.out_trade_no, ev.trade_no, amount, paid, refunded)
end
redis.call('HSET', rft, ARGV[3], ARGV[7])
redis.call('EXPIRE', rft, ARGV[9])
redis.call('HSET', KEYS[1], 'state', 'pending', 'channel', channel, 'refund_id', ARGV[3],
  'out_trade_no', ev.out_trade_no, 'trade_no', ev.trade_no, 'amount_fen', ARGV[7],
  'paid_fen', paid, 'refunded_fen', refunded, 'created_ms', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[9])
return answer('claimed', 'pending', ev.out_trade_no, ev.trade_no, amount, paid, refunded,
  ARGV[8])
