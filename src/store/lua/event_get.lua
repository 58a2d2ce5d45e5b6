-- An event by id (admin). KEYS[1] its dedup key, [2] the stream. Returns
-- {"ok", stream id, field, value, ...} or {"missing"} or {"trimmed", id}.
local sid = redis.call('GET', KEYS[1])
if not sid then return {'missing'} end
local r = redis.call('XRANGE', KEYS[2], sid, sid)
if #r == 0 then return {'trimmed', sid} end
local out = {'ok', sid}
for _, v in ipairs(r[1][2]) do out[#out + 1] = v end
return out
