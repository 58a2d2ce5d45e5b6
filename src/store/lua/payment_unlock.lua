-- A creation that stored nothing (the gateway refused it, or did not
-- answer) gives its lock back. KEYS[1] the creation lock; ARGV[1] its owner.
-- Returns 1 when released, 0 when it was no longer ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
