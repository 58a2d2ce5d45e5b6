-- Giving a claimed delivery back (shutdown): due at ARGV[3] again, no
-- attempt spent. KEYS[1] due zset, [2] delivery hash. ARGV[1] id, [2] owner,
-- [3] now (ms). Returns 1, or 0 when the lease is not ours any more.
local f = redis.call('HMGET', KEYS[2], 'state', 'lease_owner')
if f[1] ~= 'pending' or f[2] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], 'lease_owner', 'lease_until_ms')
redis.call('HSET', KEYS[2], 'due_ms', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
