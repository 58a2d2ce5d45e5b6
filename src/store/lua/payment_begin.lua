-- Before creating a payment (SPEC §10.1). KEYS[1] the order hash, [2] the
-- creation lock. ARGV[1] amount_fen ("" when the payment names none:
-- gatepay stablepay/grouppay), [2] the lock's owner, [3] its lifetime (ms).
-- Returns {"done", state, amount_fen, pay_kind, pay_target, gateway_trade_no}
-- (created before with this amount: the stored first answer),
-- {"conflict", state, amount_fen} (created or registered with another
-- amount), {"settled", state, amount_fen} (registered, no longer pending,
-- never created here), {"busy", "", ""} (another creation holds the lock)
-- or {"go", state or "", amount_fen or ""} (the lock is ours: call the gateway).
local f = redis.call('HMGET', KEYS[1], 'state', 'amount_fen', 'pay_kind', 'pay_target',
  'gateway_trade_no')
if f[1] then
  local amt = f[2] or ''
  if f[3] and f[3] ~= '' then
    if amt ~= ARGV[1] then return {'conflict', f[1], amt} end
    return {'done', f[1], amt, f[3], f[4] or '', f[5] or ''}
  end
  -- registered without an amount (an unconfirmed callback): this one fills it in
  if amt ~= '' and amt ~= ARGV[1] then return {'conflict', f[1], amt} end
  if f[1] ~= 'pending' then return {'settled', f[1], amt} end
end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'busy', '', ''}
end
return {'go', f[1] or '', f[2] or ''}
