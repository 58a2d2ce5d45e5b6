-- The outcome of one poll. KEYS[1] order hash, [2] the channel's poll
-- schedule. ARGV[1] out_trade_no, [2] owner, [3] result (paid, unpaid,
-- other, unknown, error), [4] now, [5] next poll (ms), [6] detail, [7] how
-- long a finished order is kept (s). A paid order was settled by the record
-- step already. Returns the order's state ("lost" when the lease was taken
-- over, "missing" when the order is gone).
local f = redis.call('HMGET', KEYS[1], 'state', 'lease_owner', 'expires_ms')
if not f[1] then return 'missing' end
redis.call('HSET', KEYS[1], 'last_poll_ms', ARGV[4], 'last_result', ARGV[3],
  'last_detail', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'polls', 1)
if f[1] ~= 'pending' then
  redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until_ms')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return f[1]
end
if f[2] ~= ARGV[2] then return 'lost' end
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until_ms')
if ARGV[3] == 'other' then
  redis.call('HSET', KEYS[1], 'state', 'other')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  return 'other'
end
local nxt, exp = tonumber(ARGV[5]), tonumber(f[3] or ARGV[5])
if nxt > exp then nxt = exp end
redis.call('HSET', KEYS[1], 'next_poll_ms', nxt)
redis.call('ZADD', KEYS[2], nxt, ARGV[1])
return 'pending'
