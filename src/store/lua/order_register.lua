-- Registering an order (SPEC §6). KEYS[1] order hash, [2] the channel's
-- poll schedule. ARGV[1] channel, [2] out_trade_no, [3] amount_fen, [4] now,
-- [5] expiry (ms), [6] first poll (ms; "" for a channel that is never
-- polled), [7] how long the hash outlives its expiry (s). Returns {"created"|"exists"|
-- "conflict", state, registered amount_fen}.
-- amount_fen "" registers an order whose amount is not known (an unconfirmed
-- callback's is not trusted, SPEC §2.5): no amount check, and the first
-- registration with an amount fills it in.
local f = redis.call('HMGET', KEYS[1], 'state', 'amount_fen')
if f[1] then
  if ARGV[3] == '' or f[2] == ARGV[3] then return {'exists', f[1], f[2] or ''} end
  if f[2] and f[2] ~= '' then return {'conflict', f[1], f[2]} end
  redis.call('HSET', KEYS[1], 'amount_fen', ARGV[3])
  return {'exists', f[1], ARGV[3]}
end
redis.call('HSET', KEYS[1], 'channel', ARGV[1], 'out_trade_no', ARGV[2],
  'amount_fen', ARGV[3], 'state', 'pending', 'created_ms', ARGV[4], 'expires_ms', ARGV[5],
  'next_poll_ms', ARGV[6], 'polls', 0)
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2]) end
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[5]) + tonumber(ARGV[7]) * 1000)
return {'created', 'pending', ARGV[3]}
