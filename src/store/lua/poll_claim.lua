-- Claiming due orders of one channel for polling, within its rate.
-- KEYS[1] the channel's poll schedule, [2] the queries of the last second
-- (a sliding window: no second ever sees more than the rate).
-- ARGV[1] now, [2] lease end, [3] how many at most, [4] owner, [5] order
-- hash key prefix, [6] queries per second, [7] how long a finished order
-- is kept (s). An order past its expiry becomes expired here.
-- Returns {{out_trade_no, "poll"|"expired", polls so far}, ...}.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[1]) - 1000)
local room = tonumber(ARGV[6]) - redis.call('ZCARD', KEYS[2])
local max = tonumber(ARGV[3])
if room < max then max = room end
if max <= 0 then return {} end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, max)
local out, n = {}, 0
for _, id in ipairs(ids) do
  local h = ARGV[5] .. id
  local f = redis.call('HMGET', h, 'state', 'expires_ms', 'polls')
  if f[1] ~= 'pending' then
    redis.call('ZREM', KEYS[1], id)
  elseif tonumber(f[2] or '0') <= tonumber(ARGV[1]) then
    redis.call('HSET', h, 'state', 'expired', 'expired_ms', ARGV[1])
    redis.call('HDEL', h, 'lease_owner', 'lease_until_ms')
    redis.call('ZREM', KEYS[1], id)
    redis.call('EXPIRE', h, ARGV[7])
    out[#out + 1] = {id, 'expired', f[3] or '0'}
  else
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HSET', h, 'lease_owner', ARGV[4], 'lease_until_ms', ARGV[2])
    out[#out + 1] = {id, 'poll', f[3] or '0'}
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4] .. ':' .. ARGV[1] .. ':' .. id)
    n = n + 1
  end
end
if n > 0 then redis.call('PEXPIRE', KEYS[2], 2000) end
return out
