-- Counts for the admin API: ZCARD of each key. KEYS the zsets. Sent with
-- EVAL each time (store_counts), not loaded. Returns {zcard, ...}.
local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('ZCARD', k) end
return out
