-- Claiming one order to poll it now (admin). KEYS[1] order hash, [2] the
-- channel's poll schedule. ARGV[1] out_trade_no, [2] owner, [3] lease end,
-- [4] now. Returns {"poll", polls} or {"missing"} / {"settled", state} /
-- {"busy"} (another poll holds its lease).
local f = redis.call('HMGET', KEYS[1], 'state', 'polls', 'lease_owner', 'lease_until_ms')
if not f[1] then return {'missing'} end
if f[1] ~= 'pending' then return {'settled', f[1]} end
if f[3] and tonumber(f[4] or '0') > tonumber(ARGV[4]) then return {'busy'} end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], 'lease_owner', ARGV[2], 'lease_until_ms', ARGV[3])
return {'poll', f[2] or '0'}
