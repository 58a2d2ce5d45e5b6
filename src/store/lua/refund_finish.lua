-- A refund's outcome, once the gateway answered or did not (SPEC §10.3).
-- KEYS[1] the refund hash, [2] its payment's refunds (rft:{channel}:{trade_no}).
-- ARGV[1] "done", "unknown" (no usable answer: the gateway may have
-- refunded, so the amount stays counted) or "refused" (the gateway said
-- no: the claim is dropped, and the same refund_id may be tried again),
-- [2] the answer JSON given to the caller, [3] the order.refunded event id
-- ("" when none), [4] now (ms), [5] refund_id, [6] how long refunds are kept (s).
-- Returns "ok", or "missing" when the claim is gone (expired).
if ARGV[1] == 'refused' then
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[5])
  return 'ok'
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'answer', ARGV[2], 'event_id', ARGV[3],
  'finished_ms', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 'ok'
