-- Every event of one merchant order (admin). KEYS: the order's event index
-- of each channel asked, then the stream. ARGV[1] the dedup key prefix,
-- [2] how many per channel at most. Returns {{event id, stream id or "",
-- event JSON or ""}, ...}.
local out = {}
for i = 1, #KEYS - 1 do
  local ids = redis.call('ZRANGE', KEYS[i], 0, tonumber(ARGV[2]) - 1)
  for _, id in ipairs(ids) do
    local sid = redis.call('GET', ARGV[1] .. id)
    local body = ''
    if sid then
      local r = redis.call('XRANGE', KEYS[#KEYS], sid, sid)
      if #r > 0 then
        for j = 1, #r[1][2], 2 do
          if r[1][2][j] == 'event' then body = r[1][2][j + 1] end
        end
      end
    end
    out[#out + 1] = {id, sid or '', body}
  end
end
return out
