-- Sizes for /metrics, each O(1): DBSIZE, the stream's length, and the
-- ZCARD of each further key. KEYS[1] the stream, then the zsets.
-- Returns {dbsize, xlen, zcard, ...}.
local out = {redis.call('DBSIZE'), redis.call('XLEN', KEYS[1])}
for i = 2, #KEYS do out[#out + 1] = redis.call('ZCARD', KEYS[i]) end
return out
