-- A created payment: its first answer stored and the order registered
-- (SPEC §6, §10.1) in one step. KEYS[1] the order hash, [2] the channel's
-- poll schedule, [3] the creation lock. ARGV[1] channel, [2] out_trade_no,
-- [3] amount_fen ("" none), [4] now (ms), [5] expiry (ms), [6] first poll (ms;
-- "" for a channel that is never polled), [7] how long the hash outlives its
-- expiry (s), [8] pay_kind (pay_url, qrcode, urlscheme), [9] pay_target,
-- [10] gateway_trade_no ("" none), [11] return_to ("" none), [12] pay_mode
-- (api, redirect), [13] the lock's owner. Returns {"created", state,
-- amount_fen}, {"exists", state, amount_fen, pay_kind, pay_target,
-- gateway_trade_no} (another creation stored first: its answer stands) or
-- {"conflict", state, amount_fen}. The lock is released when it is ours.
local function unlock()
  if redis.call('GET', KEYS[3]) == ARGV[13] then redis.call('DEL', KEYS[3]) end
end
local f = redis.call('HMGET', KEYS[1], 'state', 'amount_fen', 'pay_kind', 'pay_target',
  'gateway_trade_no')
unlock()
if f[1] then
  local amt = f[2] or ''
  if f[3] and f[3] ~= '' then
    if amt ~= ARGV[3] then return {'conflict', f[1], amt} end
    return {'exists', f[1], amt, f[3], f[4] or '', f[5] or ''}
  end
  if amt ~= '' and amt ~= ARGV[3] then return {'conflict', f[1], amt} end
  -- registered before (POST /v1/orders, a callback): the payment joins it
  redis.call('HSET', KEYS[1], 'pay_kind', ARGV[8], 'pay_target', ARGV[9],
    'gateway_trade_no', ARGV[10], 'pay_mode', ARGV[12], 'pay_created_ms', ARGV[4])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'amount_fen', ARGV[3]) end
  if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'return_to', ARGV[11]) end
  return {'created', f[1], ARGV[3]}
end
-- as order_register.lua, and the payment
redis.call('HSET', KEYS[1], 'channel', ARGV[1], 'out_trade_no', ARGV[2],
  'amount_fen', ARGV[3], 'state', 'pending', 'created_ms', ARGV[4], 'expires_ms', ARGV[5],
  'next_poll_ms', ARGV[6], 'polls', 0, 'pay_kind', ARGV[8], 'pay_target', ARGV[9],
  'gateway_trade_no', ARGV[10], 'pay_mode', ARGV[12], 'pay_created_ms', ARGV[4])
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'return_to', ARGV[11]) end
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2]) end
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[5]) + tonumber(ARGV[7]) * 1000)
return {'created', 'pending', ARGV[3]}
