#include "store.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "crypto.h"
#include "log.h"

/*
 * The recording step. Atomic because Redis runs a script alone.
 * KEYS[1] dedup key, KEYS[2] stream, KEYS[3] registered order hash,
 * KEYS[4] the channel's poll schedule (zset), KEYS[5] the order's paid key,
 * then for each webhook a delivery hash and that webhook's due zset. A
 * registered order that is paid, by a new event or a duplicate, is settled
 * and kept dedup_ttl.
 * ARGV[1] event id, [2] type, [3] channel, [4] out_trade_no, [5] event JSON,
 * [6] amount_fen of a payment ("" when the event is no payment), [7] dedup
 * ttl (s), [8] stream maxlen, [9] now (ms), [10] out_trade_no (the order's
 * member in the poll schedule), [11] the gateway trade id, then per webhook:
 * name, delivery id, wants-as-is ("1"/"0"), wants-if-mismatch ("1"/"0"),
 * first due time (ms).
 * A payment whose amount differs from the registered order's becomes
 * order.amount_mismatch; a payment of an order whose paid key names another
 * trade id is a repeat payment (the money moved twice). Either rewrites the
 * JSON's fixed head {"id":…,"type":"order.paid", (event.h), so the event is
 * built and sent once. The paid key keeps the first payment's trade id; a
 * repeat only extends its life, so a third payment compares with the first.
 * A repeat leaves an order that is already paid as the first payment left it.
 * The last two keys are the event's delivery set (the ids of the deliveries
 * made here) and the order's event index (a zset of event ids by record
 * time), both living dedup_ttl: every event of a merchant order, registered
 * or not, is found from the index (GET /v1/events?out_trade_no=), and its
 * deliveries from the set (GET /v1/events/ID/deliveries).
 * Returns {"new", stream id, type, deliveries, first trade id or ""} or
 * {"dup", stream id}.
 */
static const char record_script[] =
    "local prev = redis.call('GET', KEYS[1])\n"
    "if prev then\n"
    "  if ARGV[6] ~= '' and redis.call('HGET', KEYS[3], 'state') == 'pending' then\n"
    "    redis.call('HSET', KEYS[3], 'state', 'paid', 'event_id', ARGV[1], 'paid_at_ms', ARGV[9])\n"
    "    redis.call('ZREM', KEYS[4], ARGV[10])\n"
    "    redis.call('EXPIRE', KEYS[3], ARGV[7])\n"
    "  end\n"
    "  return {'dup', prev}\n"
    "end\n"
    "local etype, body, order = ARGV[2], ARGV[5], false\n"
    "local paid, mismatch, first = ARGV[6] ~= '', false, false\n"
    "local o = {false, false}\n"
    "if paid then\n"
    "  o = redis.call('HMGET', KEYS[3], 'amount_fen', 'state')\n"
    "  first = redis.call('GET', KEYS[5])\n"
    "  if first == ARGV[11] then first = false end\n"
    "end\n"
    "if o[1] or o[2] then\n"
    "  order = true\n"
    "  local want = o[1]\n"
    "  if want and want ~= '' and tonumber(want) ~= tonumber(ARGV[6]) then mismatch = true end\n"
    "end\n"
    "if mismatch or first then\n"
    "  local head = '{\"id\":\"' .. ARGV[1] .. '\",\"type\":\"order.paid\",'\n"
    "  if string.sub(body, 1, #head) ~= head then\n"
    "    return redis.error_reply('payrelay: event JSON head is not id, type')\n"
    "  end\n"
    "  local flags = ''\n"
    "  if mismatch then\n"
    "    etype = 'order.amount_mismatch'\n"
    "    flags = '\"amount_mismatch\":true,'\n"
    "  end\n"
    "  if first then flags = flags .. '\"repeat_payment\":true,' end\n"
    "  body = '{\"id\":\"' .. ARGV[1] .. '\",\"type\":\"' .. etype .. '\",' .. flags ..\n"
    "    string.sub(body, #head + 1)\n"
    "end\n"
    "local sid = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'id', ARGV[1],\n"
    "  'type', etype, 'channel', ARGV[3], 'out_trade_no', ARGV[4], 'event', body)\n"
    "redis.call('SET', KEYS[1], sid, 'EX', ARGV[7])\n"
    "redis.call('ZADD', KEYS[#KEYS], ARGV[9], ARGV[1])\n"
    "redis.call('EXPIRE', KEYS[#KEYS], ARGV[7])\n"
    "if first then\n"
    "  redis.call('EXPIRE', KEYS[5], ARGV[7])\n"
    "elseif paid then\n"
    "  redis.call('SET', KEYS[5], ARGV[11], 'EX', ARGV[7], 'NX')\n"
    "end\n"
    "if order and not (first and o[2] == 'paid') then\n"
    "  redis.call('HSET', KEYS[3], 'state', 'paid', 'event_id', ARGV[1], 'paid_at_ms', ARGV[9])\n"
    "  redis.call('ZREM', KEYS[4], ARGV[10])\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[7])\n"
    "end\n"
    "local n = 0\n"
    "for i = 0, (#ARGV - 11) / 5 - 1 do\n"
    "  local a = 12 + i * 5\n"
    "  local wants = ARGV[a + 2]\n"
    "  if mismatch then wants = ARGV[a + 3] end\n"
    "  if wants == '1' then\n"
    "    redis.call('HSET', KEYS[6 + i * 2], 'id', ARGV[a + 1], 'event_id', ARGV[1],\n"
    "      'webhook', ARGV[a], 'state', 'pending', 'attempts', 0, 'created_ms', ARGV[9],\n"
    "      'due_ms', ARGV[a + 4], 'stream_id', sid, 'event', body)\n"
    "    redis.call('ZADD', KEYS[7 + i * 2], ARGV[a + 4], ARGV[a + 1])\n"
    "    redis.call('SADD', KEYS[#KEYS - 1], ARGV[a + 1])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "if n > 0 then redis.call('EXPIRE', KEYS[#KEYS - 1], ARGV[7]) end\n"
    "return {'new', sid, etype, n, first or ''}\n";

/*
 * Claiming due deliveries of one webhook with a lease.
 * KEYS[1] the webhook's due zset. ARGV[1] now (ms), [2] lease end (ms),
 * [3] how many at most, [4] owner (instance id), [5] the delivery hash key
 * prefix. Each claimed delivery's due score becomes the lease end: if this
 * instance dies, the delivery is due again then.
 * Returns {{id, event id, event JSON, attempts}, ...}.
 */
static const char claim_script[] =
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, "
    "tonumber(ARGV[3]))\n"
    "local out = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  local h = ARGV[5] .. id\n"
    "  local f = redis.call('HMGET', h, 'event_id', 'event', 'attempts', 'state')\n"
    "  if f[2] and f[4] == 'pending' then\n"
    "    redis.call('ZADD', KEYS[1], ARGV[2], id)\n"
    "    redis.call('HSET', h, 'lease_owner', ARGV[4], 'lease_until_ms', ARGV[2])\n"
    "    out[#out + 1] = {id, f[1], f[2], f[3] or '0'}\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[1], id)\n"
    "  end\n"
    "end\n"
    "return out\n";

/*
 * The outcome of one attempt. KEYS[1] due zset, [2] delivery hash, [3] dead
 * zset. ARGV[1] id, [2] owner, [3] ok|retry|dead|probe, [4] now (ms),
 * [5] next due (ms), [6] HTTP status, [7] error text, [8] how long a
 * delivered hash is kept (s: delivery_retention). A delivered hash drops
 * its body (the stream and the event's dedup key still find the event, for a
 * replay): storage grows with the retention, not with traffic.
 * A settled delivery is left alone; a failure by an instance whose lease
 * was taken over is dropped (the new owner reports its own); a failed probe
 * spends no attempt. The last 10 attempts are kept in the hash as a JSON
 * list ("history": at_ms, outcome, status, error cut to 200 bytes) for
 * `payrelayctl deliveries show`: bounded, whatever the schedule.
 */
static const char finish_script[] =
    "local f = redis.call('HMGET', KEYS[2], 'state', 'lease_owner', 'history')\n"
    "if f[1] ~= 'pending' then return 'settled' end\n"
    "if ARGV[3] ~= 'ok' and f[2] ~= ARGV[2] then return 'lost' end\n"
    "local ok, h = pcall(cjson.decode, f[3] or '[]')\n"
    "if not ok or type(h) ~= 'table' then h = {} end\n"
    "h[#h + 1] = {at_ms = tonumber(ARGV[4]), outcome = ARGV[3], status = tonumber(ARGV[6]),\n"
    "  error = string.sub(ARGV[7], 1, 200)}\n"
    "while #h > 10 do table.remove(h, 1) end\n"
    "redis.call('HSET', KEYS[2], 'history', cjson.encode(h))\n"
    "redis.call('HSET', KEYS[2], 'last_status', ARGV[6], 'last_error', ARGV[7],\n"
    "  'last_attempt_ms', ARGV[4])\n"
    "redis.call('HDEL', KEYS[2], 'lease_owner', 'lease_until_ms')\n"
    "if ARGV[3] == 'probe' then\n"
    "  redis.call('HSET', KEYS[2], 'due_ms', ARGV[5])\n"
    "  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])\n"
    "  return 'probe'\n"
    "end\n"
    "redis.call('HINCRBY', KEYS[2], 'attempts', 1)\n"
    "if ARGV[3] == 'ok' then\n"
    "  redis.call('HSET', KEYS[2], 'state', 'delivered', 'delivered_ms', ARGV[4])\n"
    "  redis.call('HDEL', KEYS[2], 'event')\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "  redis.call('EXPIRE', KEYS[2], ARGV[8])\n"
    "elseif ARGV[3] == 'dead' then\n"
    "  redis.call('HSET', KEYS[2], 'state', 'dead', 'dead_ms', ARGV[4])\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])\n"
    "else\n"
    "  redis.call('HSET', KEYS[2], 'due_ms', ARGV[5])\n"
    "  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])\n"
    "end\n"
    "return ARGV[3]\n";

/*
 * Giving a claimed delivery back (shutdown): due at ARGV[3] again, no
 * attempt spent. KEYS[1] due zset, [2] delivery hash. ARGV[1] id, [2] owner,
 * [3] now (ms). Returns 1, or 0 when the lease is not ours any more.
 */
static const char release_script[] =
    "local f = redis.call('HMGET', KEYS[2], 'state', 'lease_owner')\n"
    "if f[1] ~= 'pending' or f[2] ~= ARGV[2] then return 0 end\n"
    "redis.call('HDEL', KEYS[2], 'lease_owner', 'lease_until_ms')\n"
    "redis.call('HSET', KEYS[2], 'due_ms', ARGV[3])\n"
    "redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])\n"
    "return 1\n";

/*
 * Registering an order (SPEC §6). KEYS[1] order hash, [2] the channel's
 * poll schedule. ARGV[1] channel, [2] out_trade_no, [3] amount_fen, [4] now,
 * [5] expiry (ms), [6] first poll (ms; "" for a channel that is never
 * polled), [7] how long the hash outlives its expiry (s). Returns {"created"|"exists"|
 * "conflict", state, registered amount_fen}.
 * amount_fen "" registers an order whose amount is not known (an unconfirmed
 * callback's is not trusted, SPEC §2.5): no amount check, and the first
 * registration with an amount fills it in.
 */
static const char order_register_script[] =
    "local f = redis.call('HMGET', KEYS[1], 'state', 'amount_fen')\n"
    "if f[1] then\n"
    "  if ARGV[3] == '' or f[2] == ARGV[3] then return {'exists', f[1], f[2] or ''} end\n"
    "  if f[2] and f[2] ~= '' then return {'conflict', f[1], f[2]} end\n"
    "  redis.call('HSET', KEYS[1], 'amount_fen', ARGV[3])\n"
    "  return {'exists', f[1], ARGV[3]}\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'channel', ARGV[1], 'out_trade_no', ARGV[2],\n"
    "  'amount_fen', ARGV[3], 'state', 'pending', 'created_ms', ARGV[4], 'expires_ms', ARGV[5],\n"
    "  'next_poll_ms', ARGV[6], 'polls', 0)\n"
    "if ARGV[6] ~= '' then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2]) end\n"
    "redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[5]) + tonumber(ARGV[7]) * 1000)\n"
    "return {'created', 'pending', ARGV[3]}\n";

/*
 * Claiming due orders of one channel for polling, within its rate.
 * KEYS[1] the channel's poll schedule, [2] the queries of the last second
 * (a sliding window: no second ever sees more than the rate).
 * ARGV[1] now, [2] lease end, [3] how many at most, [4] owner, [5] order
 * hash key prefix, [6] queries per second, [7] how long a finished order
 * is kept (s). An order past its expiry becomes expired here.
 * Returns {{out_trade_no, "poll"|"expired", polls so far}, ...}.
 */
static const char poll_claim_script[] =
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[1]) - 1000)\n"
    "local room = tonumber(ARGV[6]) - redis.call('ZCARD', KEYS[2])\n"
    "local max = tonumber(ARGV[3])\n"
    "if room < max then max = room end\n"
    "if max <= 0 then return {} end\n"
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, max)\n"
    "local out, n = {}, 0\n"
    "for _, id in ipairs(ids) do\n"
    "  local h = ARGV[5] .. id\n"
    "  local f = redis.call('HMGET', h, 'state', 'expires_ms', 'polls')\n"
    "  if f[1] ~= 'pending' then\n"
    "    redis.call('ZREM', KEYS[1], id)\n"
    "  elseif tonumber(f[2] or '0') <= tonumber(ARGV[1]) then\n"
    "    redis.call('HSET', h, 'state', 'expired', 'expired_ms', ARGV[1])\n"
    "    redis.call('HDEL', h, 'lease_owner', 'lease_until_ms')\n"
    "    redis.call('ZREM', KEYS[1], id)\n"
    "    redis.call('EXPIRE', h, ARGV[7])\n"
    "    out[#out + 1] = {id, 'expired', f[3] or '0'}\n"
    "  else\n"
    "    redis.call('ZADD', KEYS[1], ARGV[2], id)\n"
    "    redis.call('HSET', h, 'lease_owner', ARGV[4], 'lease_until_ms', ARGV[2])\n"
    "    out[#out + 1] = {id, 'poll', f[3] or '0'}\n"
    "    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4] .. ':' .. ARGV[1] .. ':' .. id)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "if n > 0 then redis.call('PEXPIRE', KEYS[2], 2000) end\n"
    "return out\n";

/*
 * Claiming one order to poll it now (admin). KEYS[1] order hash, [2] the
 * channel's poll schedule. ARGV[1] out_trade_no, [2] owner, [3] lease end,
 * [4] now. Returns {"poll", polls} or {"missing"} / {"settled", state} /
 * {"busy"} (another poll holds its lease).
 */
static const char poll_one_script[] =
    "local f = redis.call('HMGET', KEYS[1], 'state', 'polls', 'lease_owner', 'lease_until_ms')\n"
    "if not f[1] then return {'missing'} end\n"
    "if f[1] ~= 'pending' then return {'settled', f[1]} end\n"
    "if f[3] and tonumber(f[4] or '0') > tonumber(ARGV[4]) then return {'busy'} end\n"
    "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])\n"
    "redis.call('HSET', KEYS[1], 'lease_owner', ARGV[2], 'lease_until_ms', ARGV[3])\n"
    "return {'poll', f[2] or '0'}\n";

/*
 * The outcome of one poll. KEYS[1] order hash, [2] the channel's poll
 * schedule. ARGV[1] out_trade_no, [2] owner, [3] result (paid, unpaid,
 * other, unknown, error), [4] now, [5] next poll (ms), [6] detail, [7] how
 * long a finished order is kept (s). A paid order was settled by the record
 * step already. Returns the order's state ("lost" when the lease was taken
 * over, "missing" when the order is gone).
 */
static const char poll_done_script[] =
    "local f = redis.call('HMGET', KEYS[1], 'state', 'lease_owner', 'expires_ms')\n"
    "if not f[1] then return 'missing' end\n"
    "redis.call('HSET', KEYS[1], 'last_poll_ms', ARGV[4], 'last_result', ARGV[3],\n"
    "  'last_detail', ARGV[6])\n"
    "redis.call('HINCRBY', KEYS[1], 'polls', 1)\n"
    "if f[1] ~= 'pending' then\n"
    "  redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until_ms')\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "  return f[1]\n"
    "end\n"
    "if f[2] ~= ARGV[2] then return 'lost' end\n"
    "redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until_ms')\n"
    "if ARGV[3] == 'other' then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'other')\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[7])\n"
    "  return 'other'\n"
    "end\n"
    "local nxt, exp = tonumber(ARGV[5]), tonumber(f[3] or ARGV[5])\n"
    "if nxt > exp then nxt = exp end\n"
    "redis.call('HSET', KEYS[1], 'next_poll_ms', nxt)\n"
    "redis.call('ZADD', KEYS[2], nxt, ARGV[1])\n"
    "return 'pending'\n";

/*
 * An event by id (admin). KEYS[1] its dedup key, [2] the stream. Returns
 * {"ok", stream id, field, value, ...} or {"missing"} or {"trimmed", id}.
 */
static const char event_get_script[] = "local sid = redis.call('GET', KEYS[1])\n"
				       "if not sid then return {'missing'} end\n"
				       "local r = redis.call('XRANGE', KEYS[2], sid, sid)\n"
				       "if #r == 0 then return {'trimmed', sid} end\n"
				       "local out = {'ok', sid}\n"
				       "for _, v in ipairs(r[1][2]) do out[#out + 1] = v end\n"
				       "return out\n";

/*
 * Every event of one merchant order (admin). KEYS: the order's event index
 * of each channel asked, then the stream. ARGV[1] the dedup key prefix,
 * [2] how many per channel at most. Returns {{event id, stream id or "",
 * event JSON or ""}, ...}.
 */
static const char events_find_script[] =
    "local out = {}\n"
    "for i = 1, #KEYS - 1 do\n"
    "  local ids = redis.call('ZRANGE', KEYS[i], 0, tonumber(ARGV[2]) - 1)\n"
    "  for _, id in ipairs(ids) do\n"
    "    local sid = redis.call('GET', ARGV[1] .. id)\n"
    "    local body = ''\n"
    "    if sid then\n"
    "      local r = redis.call('XRANGE', KEYS[#KEYS], sid, sid)\n"
    "      if #r > 0 then\n"
    "        for j = 1, #r[1][2], 2 do\n"
    "          if r[1][2][j] == 'event' then body = r[1][2][j + 1] end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    out[#out + 1] = {id, sid or '', body}\n"
    "  end\n"
    "end\n"
    "return out\n";

/*
 * The deliveries the record step made for one event (admin). KEYS[1] its
 * delivery set. ARGV[1] delivery hash key prefix. Returns rows as
 * deliveries_list does (the score is the creation time), oldest first. A
 * delivery whose hash expired (delivery_retention) is left out: the set
 * lives dedup_ttl, longer.
 */
static const char event_deliveries_script[] =
    "local ids = redis.call('SMEMBERS', KEYS[1])\n"
    "local fields = {'event_id', 'webhook', 'state', 'attempts', 'last_status', 'last_error',\n"
    "  'created_ms', 'due_ms', 'dead_ms', 'delivered_ms', 'last_attempt_ms', 'replayed_as'}\n"
    "local out = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  local f = redis.call('HMGET', ARGV[1] .. id, unpack(fields))\n"
    "  if f[3] then\n"
    "    local row = {id, f[7] or '0'}\n"
    "    for j, name in ipairs(fields) do\n"
    "      if f[j] then row[#row + 1] = name; row[#row + 1] = f[j] end\n"
    "    end\n"
    "    out[#out + 1] = row\n"
    "  end\n"
    "end\n"
    "table.sort(out, function(x, y) return tonumber(x[2]) < tonumber(y[2]) end)\n"
    "return out\n";

/*
 * Deliveries of one webhook in one set (admin). KEYS[1] the due or dead
 * zset. ARGV[1] how many at most, [2] delivery hash key prefix. Returns
 * {{id, score, field, value, ...}, ...} without the event body.
 */
static const char deliveries_list_script[] =
    "local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')\n"
    "local fields = {'event_id', 'webhook', 'state', 'attempts', 'last_status', 'last_error',\n"
    "  'created_ms', 'due_ms', 'dead_ms', 'delivered_ms', 'last_attempt_ms', 'lease_owner',\n"
    "  'replay_of'}\n"
    "local out = {}\n"
    "for i = 1, #ids, 2 do\n"
    "  local f = redis.call('HMGET', ARGV[2] .. ids[i], unpack(fields))\n"
    "  local row = {ids[i], ids[i + 1]}\n"
    "  for j, name in ipairs(fields) do\n"
    "    if f[j] then row[#row + 1] = name; row[#row + 1] = f[j] end\n"
    "  end\n"
    "  out[#out + 1] = row\n"
    "end\n"
    "return out\n";

/*
 * Replays (SPEC §7): a new delivery of the same event, due now. A dead
 * delivery that is replayed leaves the dead set (state "replayed",
 * replayed_as), drops its body (the new delivery holds it) and expires after
 * delivery_retention like a delivered one; a settled hash without a TTL
 * (replayed by an older version) gets one here. A delivered hash has no body
 * any more: the event is read back from the stream (its stream_id, else its
 * dedup key's), and a replay fails when both are gone.
 * The new id is derived from the old one and the time.
 * ARGV[1] mode: "one" (ARGV[5] the delivery id), "dead" (ARGV[5] the
 * webhook: every dead delivery of it, at most ARGV[6]) or "range"
 * (ARGV[5] webhook, [6] at most, [7] since ms, [8] until ms, [9] wanted
 * event types ",a,b,", [10] wanted channels ",x,y," or "*"). KEYS[1] the
 * stream. ARGV[2] now (ms), [3] key prefix, [4] delivery_retention (s).
 * Returns {count, last new id} or {-1, why}.
 */
static const char replay_script[] =
    "local now, P = ARGV[2], ARGV[3]\n"
    "local function fresh(seed)\n"
    "  return 'dlv_' .. string.sub(redis.sha1hex(seed .. ':' .. now .. ':replay'), 1, 32)\n"
    "end\n"
    "local function deliver(webhook, event_id, body, sid, of)\n"
    "  local id = fresh(of ~= '' and of or (webhook .. ':' .. event_id))\n"
    "  redis.call('HSET', P .. 'delivery:' .. id, 'id', id, 'event_id', event_id,\n"
    "    'webhook', webhook, 'state', 'pending', 'attempts', 0, 'created_ms', now,\n"
    "    'due_ms', now, 'stream_id', sid, 'event', body, 'replay_of', of)\n"
    "  redis.call('ZADD', P .. 'wh:' .. webhook .. ':due', now, id)\n"
    "  return id\n"
    "end\n"
    "local function stored(sid)\n"
    "  if not sid or sid == '' then return nil end\n"
    "  local r = redis.call('XRANGE', KEYS[1], sid, sid)\n"
    "  if #r == 0 then return nil end\n"
    "  for i = 1, #r[1][2], 2 do\n"
    "    if r[1][2][i] == 'event' then return r[1][2][i + 1] end\n"
    "  end\n"
    "  return nil\n"
    "end\n"
    "local function replay(old)\n"
    "  local h = P .. 'delivery:' .. old\n"
    "  local f = redis.call('HMGET', h, 'event_id', 'event', 'webhook', 'state', 'stream_id')\n"
    "  if not f[3] or not f[4] then return nil, 'no such delivery' end\n"
    "  if f[4] == 'pending' then return nil, 'the delivery is still pending' end\n"
    "  local body = f[2] or stored(f[5]) or\n"
    "    (f[1] and stored(redis.call('GET', P .. 'dedup:' .. f[1])))\n"
    "  if not body then\n"
    "    return nil, 'the event is no longer kept (the delivery dropped it once settled, and "
    "the stream trimmed it)'\n"
    "  end\n"
    "  local id = deliver(f[3], f[1], body, f[5] or '', old)\n"
    "  if f[4] == 'dead' then\n"
    "    redis.call('ZREM', P .. 'wh:' .. f[3] .. ':dead', old)\n"
    "    redis.call('HSET', h, 'state', 'replayed', 'replayed_as', id)\n"
    "    redis.call('HDEL', h, 'event')\n"
    "    redis.call('EXPIRE', h, ARGV[4])\n"
    "  else\n"
    "    redis.call('HSET', h, 'replayed_as', id)\n"
    "    if redis.call('TTL', h) < 0 then redis.call('EXPIRE', h, ARGV[4]) end\n"
    "  end\n"
    "  return id\n"
    "end\n"
    "if ARGV[1] == 'one' then\n"
    "  local id, why = replay(ARGV[5])\n"
    "  if not id then return {-1, why} end\n"
    "  return {1, id}\n"
    "end\n"
    "local n, last = 0, ''\n"
    "if ARGV[1] == 'dead' then\n"
    "  local ids = redis.call('ZRANGE', P .. 'wh:' .. ARGV[5] .. ':dead', 0, tonumber(ARGV[6]) - "
    "1)\n"
    "  for _, old in ipairs(ids) do\n"
    "    local id = replay(old)\n"
    "    if id then n = n + 1; last = id end\n"
    "  end\n"
    "  return {n, last}\n"
    "end\n"
    "local entries = redis.call('XRANGE', KEYS[1], ARGV[7], ARGV[8], 'COUNT', tonumber(ARGV[6]))\n"
    "for _, e in ipairs(entries) do\n"
    "  local f = {}\n"
    "  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end\n"
    "  if f.event and string.find(ARGV[9], ',' .. (f.type or '') .. ',', 1, true) and\n"
    "     (ARGV[10] == '*' or string.find(ARGV[10], ',' .. (f.channel or '') .. ',', 1, true)) "
    "then\n"
    "    last = deliver(ARGV[5], f.id, f.event, e[1], '')\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return {n, last}\n";

/*
 * Purging dead deliveries (SPEC §3.2), one bounded batch: KEYS[1] the
 * webhook's dead zset. ARGV[1] before (ms: those that died earlier go),
 * [2] how many at most, [3] key prefix. Each hash goes, and every index
 * entry naming it: the dead set and its event's delivery set. A member whose
 * hash is gone already, or is no longer dead, only leaves the set.
 * Returns {purged, 1 when more died before ARGV[1] else 0}.
 */
static const char purge_script[] =
    "local P = ARGV[3]\n"
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0,\n"
    "  tonumber(ARGV[2]))\n"
    "local n = 0\n"
    "for _, id in ipairs(ids) do\n"
    "  local h = P .. 'delivery:' .. id\n"
    "  local f = redis.call('HMGET', h, 'state', 'event_id')\n"
    "  if f[1] == 'dead' then\n"
    "    if f[2] then redis.call('SREM', P .. 'evd:' .. f[2], id) end\n"
    "    redis.call('DEL', h)\n"
    "    n = n + 1\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[1], id)\n"
    "end\n"
    "local more = 0\n"
    "if redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1]) > 0 then more = 1 end\n"
    "return {n, more}\n";

/*
 * Sizes for /metrics, each O(1): DBSIZE, the stream's length, and the
 * ZCARD of each further key. KEYS[1] the stream, then the zsets.
 * Returns {dbsize, xlen, zcard, ...}.
 */
static const char sizes_script[] =
    "local out = {redis.call('DBSIZE'), redis.call('XLEN', KEYS[1])}\n"
    "for i = 2, #KEYS do out[#out + 1] = redis.call('ZCARD', KEYS[i]) end\n"
    "return out\n";

enum script {
	SCRIPT_RECORD,
	SCRIPT_CLAIM,
	SCRIPT_FINISH,
	SCRIPT_RELEASE,
	SCRIPT_ORDER_REGISTER,
	SCRIPT_POLL_CLAIM,
	SCRIPT_POLL_ONE,
	SCRIPT_POLL_DONE,
	SCRIPT_EVENT_GET,
	SCRIPT_DELIVERIES_LIST,
	SCRIPT_REPLAY,
	SCRIPT_EVENTS_FIND,
	SCRIPT_EVENT_DELIVERIES,
	SCRIPT_PURGE,
	SCRIPT_SIZES,
	NSCRIPTS,
	SCRIPT_NONE = NSCRIPTS, /* a plain command */
};

static const struct {
	const char *name;
	const char *text;
	size_t len;
} scripts[NSCRIPTS + 1] = {
	[SCRIPT_RECORD] = { "record", record_script, sizeof(record_script) - 1 },
	[SCRIPT_CLAIM] = { "claim", claim_script, sizeof(claim_script) - 1 },
	[SCRIPT_FINISH] = { "finish", finish_script, sizeof(finish_script) - 1 },
	[SCRIPT_RELEASE] = { "release", release_script, sizeof(release_script) - 1 },
	[SCRIPT_ORDER_REGISTER] = { "order_register", order_register_script,
	    sizeof(order_register_script) - 1 },
	[SCRIPT_POLL_CLAIM] = { "poll_claim", poll_claim_script, sizeof(poll_claim_script) - 1 },
	[SCRIPT_POLL_ONE] = { "poll_one", poll_one_script, sizeof(poll_one_script) - 1 },
	[SCRIPT_POLL_DONE] = { "poll_done", poll_done_script, sizeof(poll_done_script) - 1 },
	[SCRIPT_EVENT_GET] = { "event_get", event_get_script, sizeof(event_get_script) - 1 },
	[SCRIPT_DELIVERIES_LIST] = { "deliveries_list", deliveries_list_script,
	    sizeof(deliveries_list_script) - 1 },
	[SCRIPT_REPLAY] = { "replay", replay_script, sizeof(replay_script) - 1 },
	[SCRIPT_EVENTS_FIND] = { "events_find", events_find_script,
	    sizeof(events_find_script) - 1 },
	[SCRIPT_EVENT_DELIVERIES] = { "event_deliveries", event_deliveries_script,
	    sizeof(event_deliveries_script) - 1 },
	[SCRIPT_PURGE] = { "purge", purge_script, sizeof(purge_script) - 1 },
	[SCRIPT_SIZES] = { "sizes", sizes_script, sizeof(sizes_script) - 1 },
	[SCRIPT_NONE] = { "command", NULL, 0 },
};

/* delivery_retention's default, for a caller that gives none. */
#define STORE_RETENTION 604800

#define STORE_BACKOFF_MIN_MS 100
#define STORE_BACKOFF_MAX_MS 5000
/* With sentinels a reconnect asks them again: a promoted replica is found
 * within a second of the sentinels naming it. */
#define STORE_SENTINEL_BACKOFF_MAX_MS 1000
/* Each sentinel gets this long (at most timeout_ms) to connect and answer,
 * as the Sentinel client guide says: a few hundred milliseconds. */
#define STORE_SENTINEL_TIMEOUT_MS 500
/* "unix:" and a path, or "[v6]:port": for log lines. */
#define STORE_ADDR_LEN 128
/* A duplicate writes this key before its WAIT (see store_wait_begin). */
#define STORE_REPLSYNC_TTL_MS "3600000"

struct store {
	struct event_base *base;
	redisAsyncContext *ctx; /* NULL while disconnected */
	bool connected;         /* TCP/unix connection up */
	bool ready;             /* authenticated and every script loaded */
	bool closing;
	uint64_t errors; /* requests that failed or timed out */
	char sha[NSCRIPTS][41];
	int nloaded;
	struct event *reconnect_ev;
	struct event *connect_timeout_ev;
	int backoff_ms;
	int backoff_max_ms;
	size_t in_flight;
	store_ready_cb *ready_cb;
	void *ready_arg;
	/* copied from the config */
	struct netaddr addr;
	int db;
	char *user;
	char *password;
	char *prefix;
	char *stream_key;
	char maxlen[24];
	char dedup_ttl[24];
	int timeout_ms;
	int req_timeout_ms; /* timeout_ms, plus replica_timeout_ms when WAITs may queue ahead */
	/* SPEC §3.2, Redis's Sentinel client guide. With no sentinels, addr is
	 * the url's; with them it is what the last sentinel named. */
	struct netaddr *sentinels; /* the last one that answered comes first */
	size_t nsentinels;
	char *master_name;
	char *sentinel_password;
	redisAsyncContext *sq; /* the sentinel being asked, or NULL */
	size_t sq_idx;         /* its index in sentinels */
	struct event *sq_ev;   /* its deadline, or (sq NULL) "ask sq_idx now" */
	bool role_ok;          /* ROLE said master on this connection (no sentinels: true) */
	bool have_master;      /* last_master is set */
	struct netaddr last_master;
	uint64_t failovers; /* a sentinel named another master than the previous one */
	int min_replicas;   /* WAIT after each record step; 0: never */
	int replica_timeout_ms;
	bool wait_out;               /* a WAIT is out (it blocks the connection) */
	struct store_req *wait_sent; /* the records it answers, by r->next */
	struct store_req *wait_next; /* records for the next WAIT */
	/* Finished requests kept for reuse (with their buffers and timer): a
	 * callback costs no allocation here once the store is warm. */
	struct store_req *spare;
	size_t nspare;
};

/* Spare requests kept at most; their buffers above this are not kept. */
#define STORE_SPARE_MAX 256
#define STORE_SPARE_BYTES (16 * 1024)

struct store_req;
/* Called once per request: rep is NULL on a timeout (r->timed_out), a
 * dropped connection or an unusable reply. */
typedef void req_done_fn(struct store_req *r, const redisReply *rep);

struct store_req {
	struct store *s;
	enum script script;
	req_done_fn *done;
	union {
		store_record_cb *record;
		store_claim_cb *claim;
		store_done_cb *done;
		store_reply_cb *reply;
	} cb; /* the caller's callback, by script */
	void *arg;
	struct event *timer;
	bool answered; /* done was called: only the reply is awaited */
	bool timed_out;
	bool retried;     /* NOSCRIPT was answered once already */
	struct sbuf args; /* every argument's bytes, back to back */
	int argc;
	const char **argv; /* into args, once it is complete */
	size_t *offs;
	size_t *lens;
	size_t maxargs;         /* room in argv, offs and lens */
	struct store_req *next; /* in the spare list */
	/* With min_replicas, once the record step answered: its answer
	 * (wait_result; the type, then at wait_first_off the first trade id,
	 * in args), waiting for the WAIT in wait_sent or wait_next (by next). */
	bool waiting;
	enum store_result wait_result;
	size_t wait_first_off;
};

static void store_connect(struct store *s);
static void store_sentinel_ask(struct store *s);

static void
store_req_destroy(struct store_req *r)
{
	if (r->timer != NULL)
		event_free(r->timer);
	sbuf_free(&r->args);
	free(r->argv);
	free(r->offs);
	free(r->lens);
	free(r);
}

/* Done with r: kept as a spare when it is whole and not too big. */
static void
store_req_free(struct store_req *r)
{
	struct store *s;

	if (r == NULL)
		return;
	s = r->s;
	if (r->timer == NULL || r->argv == NULL || r->args.cap > STORE_SPARE_BYTES ||
	    s->nspare >= STORE_SPARE_MAX || s->closing) {
		store_req_destroy(r);
		return;
	}
	evtimer_del(r->timer);
	r->next = s->spare;
	s->spare = r;
	s->nspare++;
}

static void
store_req_answer(struct store_req *r, const redisReply *rep)
{
	if (r->answered)
		return;
	r->answered = true;
	r->s->in_flight--;
	if (r->timer != NULL)
		evtimer_del(r->timer);
	r->done(r, rep);
}

static void
store_schedule_reconnect(struct store *s)
{
	struct timeval tv;

	if (s->closing)
		return;
	tv.tv_sec = s->backoff_ms / 1000;
	tv.tv_usec = (s->backoff_ms % 1000) * 1000;
	evtimer_add(s->reconnect_ev, &tv);
	s->backoff_ms *= 2;
	if (s->backoff_ms > s->backoff_max_ms)
		s->backoff_ms = s->backoff_max_ms;
}

static void
store_reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
	store_connect(arg);
}

static void
store_script_loaded(redisAsyncContext *c, void *reply, void *privdata)
{
	struct store *s = c->data;
	size_t i = (size_t)(uintptr_t)privdata;
	redisReply *rep = reply;

	if (rep == NULL)
		return; /* disconnected: the disconnect callback reconnects */
	if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
		log_errorx("redis script load failed", "script=%s error=\"%.200s\"",
		    scripts[i].name,
		    rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		redisAsyncDisconnect(c);
		return;
	}
	memcpy(s->sha[i], rep->str, 40);
	s->sha[i][40] = '\0';
	if (++s->nloaded < NSCRIPTS)
		return;
	/* ROLE answered before the loads: not a master, or going away. */
	if (!s->role_ok || (c->c.flags & REDIS_DISCONNECTING))
		return;
	s->ready = true;
	s->backoff_ms = STORE_BACKOFF_MIN_MS;
	log_info("redis ready", "record_script=%s", s->sha[SCRIPT_RECORD]);
	if (s->ready_cb != NULL)
		s->ready_cb(s->ready_arg);
}

/* AUTH and SELECT answers: an error means the settings are wrong. */
static void
store_setup_reply(redisAsyncContext *c, void *reply, void *privdata)
{
	redisReply *rep = reply;

	if (rep == NULL)
		return;
	if (rep->type == REDIS_REPLY_ERROR) {
		/* The reply never echoes the password. */
		log_errorx("redis refused the connection setup", "step=%s error=\"%.200s\"",
		    (const char *)privdata, rep->str);
		redisAsyncDisconnect(c);
	}
}

static void
netaddr_fmt(const struct netaddr *a, char *buf, size_t n)
{
	if (a->is_unix)
		snprintf(buf, n, "unix:%s", a->path);
	else
		snprintf(buf, n, strchr(a->host, ':') != NULL ? "[%s]:%u" : "%s:%u", a->host,
		    (unsigned)a->port);
}

/* Step 3 of the Sentinel client guide: the server a sentinel named must
 * say it is the master, or it is asked again (a failover in progress). */
static void
store_role_reply(redisAsyncContext *c, void *reply, void *privdata)
{
	struct store *s = c->data;
	redisReply *rep = reply;
	char addr[STORE_ADDR_LEN], prev[STORE_ADDR_LEN];
	const char *role = "?";

	if (rep == NULL || c != s->ctx)
		return;
	netaddr_fmt(&s->addr, addr, sizeof(addr));
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
	    rep->element[0]->type == REDIS_REPLY_STRING)
		role = rep->element[0]->str;
	else if (rep->type == REDIS_REPLY_ERROR)
		role = rep->str;
	if (strcmp(role, "master") != 0) {
		log_warnx("redis server named by the sentinels is no master, asking again",
		    "addr=%s role=\"%.100s\" retry_ms=%d", addr, role, s->backoff_ms);
		redisAsyncDisconnect(c);
		return;
	}
	s->role_ok = true;
	if (s->have_master && memcmp(&s->last_master, &s->addr, sizeof(s->addr)) != 0) {
		s->failovers++;
		netaddr_fmt(&s->last_master, prev, sizeof(prev));
		log_warnx("redis master found", "addr=%s master_name=%s previous=%s failovers=%llu",
		    addr, s->master_name, prev, (unsigned long long)s->failovers);
	} else {
		log_info("redis master found", "addr=%s master_name=%s", addr, s->master_name);
	}
	s->last_master = s->addr;
	s->have_master = true;
}

static void
store_on_connect(const redisAsyncContext *c, int status)
{
	struct store *s = c->data;
	size_t i;

	evtimer_del(s->connect_timeout_ev);
	if (status != REDIS_OK) {
		char addr[STORE_ADDR_LEN];

		/* hiredis frees the context after this callback. */
		netaddr_fmt(&s->addr, addr, sizeof(addr));
		log_warnx("redis connect failed", "addr=%s error=\"%s\" retry_ms=%d", addr,
		    c->errstr, s->backoff_ms);
		s->ctx = NULL;
		store_schedule_reconnect(s);
		return;
	}
	s->connected = true;
	s->nloaded = 0;
	s->role_ok = s->nsentinels == 0;
	log_info("redis connected", "");
	/* TCP only: on a unix socket the keep-alive options fail and hiredis
	 * drops the connection. */
	if (c->c.connection_type == REDIS_CONN_TCP)
		redisEnableKeepAlive((redisContext *)&c->c);
	/* Commands are pipelined in order: AUTH and SELECT run before the loads. */
	if (s->password != NULL) {
		if (s->user != NULL)
			redisAsyncCommand(s->ctx, store_setup_reply, (void *)"AUTH", "AUTH %s %s",
			    s->user, s->password);
		else
			redisAsyncCommand(s->ctx, store_setup_reply, (void *)"AUTH", "AUTH %s",
			    s->password);
	}
	if (s->db != 0)
		redisAsyncCommand(s->ctx, store_setup_reply, (void *)"SELECT", "SELECT %d", s->db);
	if (s->nsentinels > 0)
		redisAsyncCommand(s->ctx, store_role_reply, NULL, "ROLE");
	for (i = 0; i < NSCRIPTS; i++)
		redisAsyncCommand(s->ctx, store_script_loaded, (void *)(uintptr_t)i,
		    "SCRIPT LOAD %b", scripts[i].text, scripts[i].len);
}

static void
store_on_disconnect(const redisAsyncContext *c, int status)
{
	struct store *s = c->data;

	/* hiredis frees the context after this callback. */
	s->ctx = NULL;
	s->connected = false;
	s->ready = false;
	if (s->closing)
		return;
	/* With sentinels every reconnect asks them again: a killed
	 * connection is how a failover usually shows. */
	if (s->nsentinels > 0 && s->role_ok && status != REDIS_OK)
		log_warnx("redis master moved", "reason=\"connection lost: %.100s\" retry_ms=%d",
		    c->errstr, s->backoff_ms);
	else
		log_warnx("redis disconnected", "error=\"%s\" retry_ms=%d",
		    status == REDIS_OK ? "closed" : c->errstr, s->backoff_ms);
	s->role_ok = false;
	store_schedule_reconnect(s);
}

static void
store_connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	redisAsyncContext *c = s->ctx;

	if (c == NULL || s->connected)
		return;
	log_warnx("redis connect timed out", "timeout_ms=%d retry_ms=%d", s->timeout_ms,
	    s->backoff_ms);
	/* Not connected yet, so hiredis calls neither callback from here. */
	s->ctx = NULL;
	redisAsyncFree(c);
	store_schedule_reconnect(s);
}

/* Connects to s->addr: the url's, or the master a sentinel named. */
static void
store_connect_addr(struct store *s)
{
	redisAsyncContext *c;
	struct timeval tv;

	if (s->addr.is_unix)
		c = redisAsyncConnectUnix(s->addr.path);
	else
		c = redisAsyncConnect(s->addr.host, s->addr.port);
	if (c == NULL || c->err) {
		char addr[STORE_ADDR_LEN];

		netaddr_fmt(&s->addr, addr, sizeof(addr));
		log_warnx("redis connect failed", "addr=%s error=\"%s\" retry_ms=%d", addr,
		    c ? c->errstr : "out of memory", s->backoff_ms);
		if (c != NULL)
			redisAsyncFree(c);
		store_schedule_reconnect(s);
		return;
	}
	c->data = s;
	if (redisLibeventAttach(c, s->base) != REDIS_OK) {
		redisAsyncFree(c);
		store_schedule_reconnect(s);
		return;
	}
	redisAsyncSetConnectCallback(c, store_on_connect);
	redisAsyncSetDisconnectCallback(c, store_on_disconnect);
	s->ctx = c;
	tv.tv_sec = s->timeout_ms / 1000;
	tv.tv_usec = (s->timeout_ms % 1000) * 1000;
	evtimer_add(s->connect_timeout_ev, &tv);
}

static void
store_connect(struct store *s)
{
	if (s->closing || s->ctx != NULL || s->sq != NULL)
		return;
	if (s->nsentinels == 0) {
		store_connect_addr(s);
		return;
	}
	s->sq_idx = 0;
	store_sentinel_ask(s);
}

/* --- Sentinel (Redis's Sentinel client guide) --------------------------- */

/* The current sentinel failed: the next one is asked from the timer, not
 * from inside the hiredis callback that failed. */
static void
store_sentinel_next(struct store *s)
{
	struct timeval tv = { 0, 0 };

	s->sq = NULL;
	s->sq_idx++;
	evtimer_add(s->sq_ev, &tv);
}

static void
store_sentinel_reply(redisAsyncContext *c, void *reply, void *privdata)
{
	struct store *s = c->data;
	redisReply *rep = reply;
	const struct netaddr *sa;
	struct netaddr m;
	unsigned char bin[16];
	char addr[STORE_ADDR_LEN];
	long long port = 0;
	char *end;

	if (c != s->sq)
		return; /* given up on already */
	evtimer_del(s->sq_ev);
	sa = &s->sentinels[s->sq_idx];
	netaddr_fmt(sa, addr, sizeof(addr));
	if (rep == NULL) {
		log_warnx("redis sentinel did not answer", "sentinel=%s error=\"%.100s\"", addr,
		    c->errstr[0] != '\0' ? c->errstr : "connection closed");
		store_sentinel_next(s);
		return;
	}
	/* The sentinel has answered: it is done with either way. */
	redisAsyncDisconnect(c);
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_STRING ||
	    rep->element[1]->type != REDIS_REPLY_STRING) {
		const char *answer = "?";

		if (rep->type == REDIS_REPLY_ERROR)
			answer = rep->str;
		else if (rep->type == REDIS_REPLY_NIL)
			answer = "nil (the name is not monitored)";
		log_warnx("redis sentinel does not name the master",
		    "sentinel=%s master_name=%s answer=\"%.100s\"", addr, s->master_name, answer);
		store_sentinel_next(s);
		return;
	}
	memset(&m, 0, sizeof(m));
	port = strtoll(rep->element[1]->str, &end, 10);
	if (rep->element[0]->len >= sizeof(m.host) || *end != '\0' || port < 1 || port > 65535 ||
	    (inet_pton(AF_INET, rep->element[0]->str, bin) != 1 &&
		inet_pton(AF_INET6, rep->element[0]->str, bin) != 1)) {
		/* A name would need a blocking lookup (announce-hostnames). */
		log_warnx("redis sentinel names the master by an address payrelayd cannot use",
		    "sentinel=%s host=\"%.64s\" port=\"%.16s\"", addr, rep->element[0]->str,
		    rep->element[1]->str);
		store_sentinel_next(s);
		return;
	}
	memcpy(m.host, rep->element[0]->str, rep->element[0]->len);
	m.port = (uint16_t)port;
	/* The sentinel that answered is asked first next time. */
	if (s->sq_idx > 0) {
		struct netaddr first = s->sentinels[s->sq_idx];

		memmove(&s->sentinels[1], &s->sentinels[0], s->sq_idx * sizeof(s->sentinels[0]));
		s->sentinels[0] = first;
	}
	s->sq = NULL;
	s->addr = m;
	store_connect_addr(s);
}

static void
store_sentinel_on_connect(const redisAsyncContext *c, int status)
{
	struct store *s = c->data;
	char addr[STORE_ADDR_LEN];

	if (c != s->sq || status == REDIS_OK)
		return;
	/* hiredis frees the context after this callback. */
	evtimer_del(s->sq_ev);
	netaddr_fmt(&s->sentinels[s->sq_idx], addr, sizeof(addr));
	log_warnx("redis sentinel connect failed", "sentinel=%s error=\"%s\"", addr, c->errstr);
	store_sentinel_next(s);
}

static void
store_sentinel_on_disconnect(const redisAsyncContext *c, int status)
{
	struct store *s = c->data;

	/* hiredis frees the context after this callback; a pending reply was
	 * already called with NULL and moved on. */
	if (c == s->sq) {
		evtimer_del(s->sq_ev);
		store_sentinel_next(s);
	}
}

/* Timer: sq set means its deadline passed; otherwise ask sentinel sq_idx. */
static void
store_sentinel_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	redisAsyncContext *c = s->sq;
	char addr[STORE_ADDR_LEN];

	if (c != NULL) {
		netaddr_fmt(&s->sentinels[s->sq_idx], addr, sizeof(addr));
		log_warnx("redis sentinel timed out", "sentinel=%s timeout_ms=%d", addr,
		    s->timeout_ms < STORE_SENTINEL_TIMEOUT_MS ? s->timeout_ms
							      : STORE_SENTINEL_TIMEOUT_MS);
		s->sq = NULL;
		/* Its pending callbacks run with NULL and see sq is not theirs. */
		redisAsyncFree(c);
		s->sq_idx++;
	}
	store_sentinel_ask(s);
}

/* Steps 1 and 2: asks sentinel sq_idx, or (none left) gives up until the
 * reconnect timer. */
static void
store_sentinel_ask(struct store *s)
{
	const struct netaddr *a;
	redisAsyncContext *c;
	struct timeval tv;
	int ms =
	    s->timeout_ms < STORE_SENTINEL_TIMEOUT_MS ? s->timeout_ms : STORE_SENTINEL_TIMEOUT_MS;
	char addr[STORE_ADDR_LEN];

	if (s->closing)
		return;
	for (; s->sq_idx < s->nsentinels; s->sq_idx++) {
		a = &s->sentinels[s->sq_idx];
		c = redisAsyncConnect(a->host, a->port);
		if (c == NULL || c->err) {
			netaddr_fmt(a, addr, sizeof(addr));
			log_warnx("redis sentinel connect failed", "sentinel=%s error=\"%s\"", addr,
			    c ? c->errstr : "out of memory");
			if (c != NULL)
				redisAsyncFree(c);
			continue;
		}
		c->data = s;
		if (redisLibeventAttach(c, s->base) != REDIS_OK) {
			redisAsyncFree(c);
			continue;
		}
		redisAsyncSetConnectCallback(c, store_sentinel_on_connect);
		redisAsyncSetDisconnectCallback(c, store_sentinel_on_disconnect);
		/* Queued now, written once connected. A wrong password shows as
		 * an error answer to the question. */
		if (s->sentinel_password != NULL)
			redisAsyncCommand(c, NULL, NULL, "AUTH %s", s->sentinel_password);
		if (redisAsyncCommand(c, store_sentinel_reply, NULL,
			"SENTINEL get-master-addr-by-name %s", s->master_name) != REDIS_OK) {
			redisAsyncFree(c);
			continue;
		}
		s->sq = c;
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		evtimer_add(s->sq_ev, &tv);
		return;
	}
	log_errorx("no sentinel answered", "sentinels=%zu master_name=%s retry_ms=%d",
	    s->nsentinels, s->master_name, s->backoff_ms);
	store_schedule_reconnect(s);
}

/* -READONLY and -LOADING (also inside a script's error), and -MASTERDOWN:
 * the server is no longer (or not yet) a usable master. */
static bool
store_moved_error(const char *e)
{
	return strncmp(e, "READONLY", 8) == 0 || strncmp(e, "LOADING", 7) == 0 ||
	    strncmp(e, "MASTERDOWN", 10) == 0 || strstr(e, "-READONLY") != NULL ||
	    strstr(e, "-LOADING") != NULL || strstr(e, " READONLY ") != NULL ||
	    strstr(e, "LOADING Redis") != NULL;
}

/* Stops using connection c: nothing new is sent; replies already on their
 * way still arrive, then the disconnect callback reconnects (asking the
 * sentinels again). */
static void
store_master_moved(struct store *s, redisAsyncContext *c, const char *why)
{
	char addr[STORE_ADDR_LEN];

	if (c != s->ctx || (c->c.flags & REDIS_DISCONNECTING))
		return;
	netaddr_fmt(&s->addr, addr, sizeof(addr));
	log_warnx("redis master moved", "addr=%s reason=\"%.120s\"", addr, why);
	s->ready = false;
	s->role_ok = false;
	redisAsyncDisconnect(c);
}

struct store *
store_new(struct event_base *base, const struct config *cfg, store_ready_cb *ready_cb,
    void *ready_arg)
{
	struct store *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base = base;
	s->ready_cb = ready_cb;
	s->ready_arg = ready_arg;
	s->addr = cfg->redis;
	s->db = cfg->redis_db;
	s->timeout_ms = cfg->redis_timeout_ms;
	s->min_replicas = cfg->redis_min_replicas;
	s->replica_timeout_ms = cfg->redis_replica_timeout_ms;
	/* A WAIT holds every request sent after it: theirs wait too. */
	s->req_timeout_ms = s->timeout_ms + (s->min_replicas > 0 ? s->replica_timeout_ms : 0);
	s->backoff_ms = STORE_BACKOFF_MIN_MS;
	s->backoff_max_ms =
	    cfg->nredis_sentinels > 0 ? STORE_SENTINEL_BACKOFF_MAX_MS : STORE_BACKOFF_MAX_MS;
	if (cfg->nredis_sentinels > 0) {
		s->sentinels = calloc(cfg->nredis_sentinels, sizeof(*s->sentinels));
		if (s->sentinels != NULL) {
			memcpy(s->sentinels, cfg->redis_sentinels,
			    cfg->nredis_sentinels * sizeof(*s->sentinels));
			s->nsentinels = cfg->nredis_sentinels;
		}
		s->master_name = xstrdup(cfg->redis_master_name);
		s->sentinel_password = xstrdup(cfg->redis_sentinel_password);
	}
	snprintf(s->maxlen, sizeof(s->maxlen), "%lld", cfg->stream_maxlen);
	snprintf(s->dedup_ttl, sizeof(s->dedup_ttl), "%lld", (long long)cfg->dedup_ttl);
	s->user = xstrdup(cfg->redis_user);
	s->password = xstrdup(cfg->redis_password);
	s->prefix = xstrdup(cfg->redis_prefix);
	s->stream_key = xstrdup(cfg->stream_key);
	s->reconnect_ev = evtimer_new(base, store_reconnect_cb, s);
	s->connect_timeout_ev = evtimer_new(base, store_connect_timeout_cb, s);
	s->sq_ev = evtimer_new(base, store_sentinel_cb, s);
	if (s->prefix == NULL || s->stream_key == NULL || s->reconnect_ev == NULL ||
	    s->connect_timeout_ev == NULL || s->sq_ev == NULL || (cfg->redis_user && !s->user) ||
	    (cfg->redis_password && !s->password) ||
	    (cfg->nredis_sentinels > 0 &&
		(s->nsentinels == 0 || s->master_name == NULL ||
		    (cfg->redis_sentinel_password && !s->sentinel_password)))) {
		store_free(s);
		return NULL;
	}
	store_connect(s);
	return s;
}

void
store_free(struct store *s)
{
	if (s == NULL)
		return;
	s->closing = true;
	if (s->ctx != NULL) {
		redisAsyncContext *c = s->ctx;

		s->ctx = NULL;
		/* Pending replies are called with NULL: their callers see errors. */
		redisAsyncFree(c);
	}
	if (s->sq != NULL) {
		redisAsyncContext *c = s->sq;

		s->sq = NULL;
		redisAsyncFree(c);
	}
	if (s->sq_ev != NULL)
		event_free(s->sq_ev);
	if (s->reconnect_ev != NULL)
		event_free(s->reconnect_ev);
	if (s->connect_timeout_ev != NULL)
		event_free(s->connect_timeout_ev);
	while (s->spare != NULL) {
		struct store_req *r = s->spare;

		s->spare = r->next;
		store_req_destroy(r);
	}
	free(s->user);
	if (s->password != NULL)
		explicit_bzero(s->password, strlen(s->password));
	free(s->password);
	free(s->prefix);
	free(s->stream_key);
	free(s->sentinels);
	free(s->master_name);
	if (s->sentinel_password != NULL)
		explicit_bzero(s->sentinel_password, strlen(s->sentinel_password));
	free(s->sentinel_password);
	free(s);
}

bool
store_ready(const struct store *s)
{
	return s != NULL && s->ready && s->ctx != NULL;
}

size_t
store_in_flight(const struct store *s)
{
	return s->in_flight;
}

/* --- requests ---------------------------------------------------------- */

/* --- WAIT: acks that wait for replicas (SPEC §3.2) ----------------------- */

static void record_wait_done(struct store_req *r, const redisReply *rep);

/* Answers the records of `list` (rep: the WAIT's integer, or NULL) and
 * frees them. */
static void
store_wait_answer(struct store *s, struct store_req *list, const redisReply *rep)
{
	struct store_req *r;

	while ((r = list) != NULL) {
		list = r->next;
		r->next = NULL;
		if (!r->answered) {
			if (rep == NULL || rep->integer < s->min_replicas)
				s->errors++;
			store_req_answer(r, rep);
		}
		store_req_free(r);
	}
}

static void
store_wait_reply(redisAsyncContext *c, void *reply, void *privdata)
{
	struct store *s = privdata;
	struct store_req *batch = s->wait_sent, *r;
	redisReply *rep = reply;
	size_t n = 0;

	s->wait_sent = NULL;
	s->wait_out = false;
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR && store_moved_error(rep->str))
		store_master_moved(s, c, rep->str);
	if (rep != NULL && rep->type != REDIS_REPLY_INTEGER) {
		log_errorx("redis WAIT failed", "error=\"%.200s\"",
		    rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		rep = NULL;
	}
	if (rep != NULL && rep->integer < s->min_replicas) {
		for (r = batch; r != NULL; r = r->next)
			n++;
		log_warnx("redis write not on enough replicas, answered as failed",
		    "replicas=%lld min_replicas=%d replica_timeout_ms=%d records=%zu", rep->integer,
		    s->min_replicas, s->replica_timeout_ms, n);
	}
	store_wait_answer(s, batch, rep);
	/* The records answered while that WAIT was out: one WAIT for them all
	 * (each script ran before it, so its offset covers them). */
	if (s->wait_next == NULL)
		return;
	batch = s->wait_next;
	s->wait_next = NULL;
	if (rep == NULL || c != s->ctx || (c->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) ||
	    redisAsyncCommand(c, store_wait_reply, s, "WAIT %d %d", s->min_replicas,
		s->replica_timeout_ms) != REDIS_OK) {
		store_wait_answer(s, batch, NULL);
		return;
	}
	s->wait_sent = batch;
	s->wait_out = true;
}

/* After the record step's answer (new or duplicate), WAIT min_replicas
 * replica_timeout_ms on the same connection: it returns once that many
 * replicas have every write this connection made so far. Sent only now,
 * not pipelined behind the script: a NOSCRIPT retry would land after it.
 * A WAIT blocks the connection, so one at most is out: records answered
 * meanwhile wait for the next one, which covers them all.
 * A duplicate wrote nothing itself, and the write it duplicates may have
 * come through another connection (another instance, or before a
 * reconnect): one tiny write (P replsync) first moves this connection's
 * replication offset past it, so the WAIT covers it too.
 * Returns 0 (r waits for a WAIT's answer), 1 (not a record answer: the
 * caller goes on with it), -1 (the WAIT could not be sent). */
static int
store_wait_begin(struct store_req *r, redisAsyncContext *c, const redisReply *rep)
{
	struct store *s = r->s;
	const char *type = "", *first = "";
	struct timeval tv;
	int ms;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
	    rep->element[0]->type != REDIS_REPLY_STRING)
		return 1;
	if (strcmp(rep->element[0]->str, "dup") == 0) {
		r->wait_result = STORE_DUP;
	} else if (strcmp(rep->element[0]->str, "new") == 0 && rep->elements >= 5 &&
	    rep->element[2]->type == REDIS_REPLY_STRING &&
	    rep->element[4]->type == REDIS_REPLY_STRING) {
		r->wait_result = STORE_NEW;
		type = rep->element[2]->str;
		first = rep->element[4]->str;
	} else {
		return 1;
	}
	if (c != s->ctx || (c->c.flags & REDIS_DISCONNECTING))
		return -1;
	/* The arguments are spent: the buffer keeps the answer's strings. */
	sbuf_reset(&r->args);
	if (sbuf_add(&r->args, type, strlen(type) + 1) == -1)
		return -1;
	r->wait_first_off = r->args.len;
	if (sbuf_add(&r->args, first, strlen(first) + 1) == -1)
		return -1;
	if (r->wait_result == STORE_DUP &&
	    redisAsyncCommand(c, NULL, NULL, "SET %sreplsync 1 PX " STORE_REPLSYNC_TTL_MS,
		s->prefix) != REDIS_OK)
		return -1;
	if (!s->wait_out) {
		if (redisAsyncCommand(c, store_wait_reply, s, "WAIT %d %d", s->min_replicas,
			s->replica_timeout_ms) != REDIS_OK)
			return -1;
		s->wait_out = true;
		r->next = s->wait_sent;
		s->wait_sent = r;
	} else {
		r->next = s->wait_next;
		s->wait_next = r;
	}
	r->waiting = true;
	r->done = record_wait_done;
	/* This WAIT, or the one out now and then the next. */
	ms = 2 * s->replica_timeout_ms + s->timeout_ms;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(r->timer, &tv);
	return 0;
}

static void
store_req_reply(redisAsyncContext *c, void *reply, void *privdata)
{
	struct store_req *r = privdata;
	struct store *s = r->s;
	redisReply *rep = reply;

	if (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
	    strncmp(rep->str, "NOSCRIPT", 8) == 0 && !r->retried && s->ctx != NULL) {
		/* The script cache was flushed (restart, SCRIPT FLUSH): EVAL
		 * sends the body and caches it again. */
		r->retried = true;
		r->argv[0] = "EVAL";
		r->lens[0] = 4;
		r->argv[1] = scripts[r->script].text;
		r->lens[1] = scripts[r->script].len;
		if (redisAsyncCommandArgv(s->ctx, store_req_reply, r, r->argc, r->argv, r->lens) ==
		    REDIS_OK)
			return;
		rep = NULL;
	}
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR && store_moved_error(rep->str))
		store_master_moved(s, c, rep->str);
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR && r->script != SCRIPT_NONE) {
		log_errorx("redis script failed", "script=%s error=\"%.200s\"",
		    scripts[r->script].name, rep->str);
		rep = NULL;
	}
	if (rep != NULL && r->script == SCRIPT_RECORD && s->min_replicas > 0 && !r->answered) {
		int w = store_wait_begin(r, c, rep);

		if (w == 0)
			return; /* r lives on until the WAIT's answer */
		if (w == -1)
			rep = NULL;
	}
	if (rep == NULL && !r->answered)
		s->errors++;
	store_req_answer(r, rep);
	store_req_free(r);
}

static void
store_req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_req *r = arg;

	/* The script may still run: every script is safe to see applied late. */
	log_warnx("redis request timed out", "script=%s%s timeout_ms=%d", scripts[r->script].name,
	    r->waiting ? " (WAIT)" : "",
	    r->waiting ? 2 * r->s->replica_timeout_ms + r->s->timeout_ms : r->s->req_timeout_ms);
	r->timed_out = true;
	r->s->errors++;
	store_req_answer(r, NULL);
}

/* A request for `script` with room for `maxargs` arguments after EVALSHA,
 * sha and the key count; NULL when Redis is not ready or out of memory. */
static struct store_req *
store_req_new(struct store *s, enum script script, size_t maxargs, size_t bytes, req_done_fn *done,
    void *arg)
{
	struct store_req *r;

	if (!store_ready(s))
		return NULL;
	maxargs += 3;
	if ((r = s->spare) != NULL) {
		s->spare = r->next;
		s->nspare--;
		sbuf_reset(&r->args);
	} else {
		if ((r = calloc(1, sizeof(*r))) == NULL)
			return NULL;
		r->s = s;
		sbuf_init(&r->args);
		if ((r->timer = evtimer_new(s->base, store_req_timeout_cb, r)) == NULL) {
			store_req_destroy(r);
			return NULL;
		}
	}
	r->script = script;
	r->done = done;
	memset(&r->cb, 0, sizeof(r->cb));
	r->arg = arg;
	r->answered = false;
	r->timed_out = false;
	r->retried = false;
	r->waiting = false;
	r->argc = 0;
	r->next = NULL;
	if (r->maxargs < maxargs) {
		free(r->argv);
		free(r->offs);
		free(r->lens);
		r->argv = calloc(maxargs, sizeof(*r->argv));
		r->offs = calloc(maxargs, sizeof(*r->offs));
		r->lens = calloc(maxargs, sizeof(*r->lens));
		r->maxargs = maxargs;
		if (r->argv == NULL || r->offs == NULL || r->lens == NULL) {
			store_req_destroy(r);
			return NULL;
		}
	}
	if (sbuf_reserve(&r->args, bytes + 128) == -1) {
		store_req_destroy(r);
		return NULL;
	}
	return r;
}

/* Appends n bytes of data as the next argument. */
static int
req_arg(struct store_req *r, const char *data, size_t n)
{
	r->offs[r->argc] = r->args.len;
	r->lens[r->argc] = n;
	r->argc++;
	return sbuf_add(&r->args, data, n);
}

static int
req_args(struct store_req *r, const char *s)
{
	return req_arg(r, s, strlen(s));
}

/* Appends the concatenation of the strings up to NULL as the next
 * argument: key names are built without printf on the hot path. */
static int req_cat(struct store_req *r, ...) __attribute__((sentinel));

static int
req_cat(struct store_req *r, ...)
{
	size_t start = r->args.len;
	const char *part;
	va_list ap;
	int rc = sbuf_add(&r->args, "", 0);

	va_start(ap, r);
	while ((part = va_arg(ap, const char *)) != NULL)
		rc |= sbuf_adds(&r->args, part);
	va_end(ap);
	r->offs[r->argc] = start;
	r->lens[r->argc] = r->args.len - start;
	r->argc++;
	return rc;
}

static int
req_argll(struct store_req *r, long long v)
{
	char num[24], *p = num + sizeof(num);
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	/* By hand: on every callback's path, and printf is slow. */
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0)
		*--p = '-';
	return req_arg(r, p, (size_t)(num + sizeof(num) - p));
}

/* Starts EVALSHA sha nkeys: the first three arguments. */
static int
req_begin(struct store_req *r, int nkeys)
{
	int rc = req_args(r, "EVALSHA");

	rc |= req_args(r, r->s->sha[r->script]);
	rc |= req_argll(r, nkeys);
	return rc;
}

/* Sends r (built without errors when rc is 0) or frees it. Returns 0 or -1
 * (done is not called then). */
static int
req_send(struct store_req *r, int rc)
{
	struct store *s = r->s;
	struct timeval tv;
	int i;

	if (rc != 0)
		goto fail;
	/* The buffer no longer moves: point the arguments into it. */
	for (i = 0; i < r->argc; i++)
		r->argv[i] = r->args.p + r->offs[i];
	if (redisAsyncCommandArgv(s->ctx, store_req_reply, r, r->argc, r->argv, r->lens) !=
	    REDIS_OK)
		goto fail;
	s->in_flight++;
	tv.tv_sec = s->req_timeout_ms / 1000;
	tv.tv_usec = (s->req_timeout_ms % 1000) * 1000;
	evtimer_add(r->timer, &tv);
	return 0;
fail:
	store_req_free(r);
	return -1;
}

/* --- the record step ----------------------------------------------------- */

static void
record_done(struct store_req *r, const redisReply *rep)
{
	store_record_cb *cb = r->cb.record;

	if (rep == NULL) {
		cb(r->arg, r->timed_out ? STORE_TIMEOUT : STORE_ERROR, NULL, NULL);
	} else if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2 &&
	    rep->element[0]->type == REDIS_REPLY_STRING) {
		if (strcmp(rep->element[0]->str, "dup") == 0) {
			cb(r->arg, STORE_DUP, NULL, NULL);
		} else if (strcmp(rep->element[0]->str, "new") == 0 && rep->elements >= 5 &&
		    rep->element[2]->type == REDIS_REPLY_STRING &&
		    rep->element[4]->type == REDIS_REPLY_STRING) {
			const redisReply *first = rep->element[4];

			cb(r->arg, STORE_NEW, rep->element[2]->str,
			    first->len > 0 ? first->str : NULL);
		} else {
			cb(r->arg, STORE_ERROR, NULL, NULL);
		}
	} else {
		log_errorx("redis record step gave an unexpected reply", "type=%d", rep->type);
		cb(r->arg, STORE_ERROR, NULL, NULL);
	}
}

/* The record step's answer, kept in r->args by store_wait_begin, once the
 * WAIT answered (rep: its integer) or not (NULL). */
static void
record_wait_done(struct store_req *r, const redisReply *rep)
{
	store_record_cb *cb = r->cb.record;
	const char *first = r->args.p + r->wait_first_off;

	if (rep == NULL)
		cb(r->arg, r->timed_out ? STORE_TIMEOUT : STORE_ERROR, NULL, NULL);
	else if (rep->integer < r->s->min_replicas)
		cb(r->arg, STORE_UNREPLICATED, NULL, NULL);
	else if (r->wait_result == STORE_DUP)
		cb(r->arg, STORE_DUP, NULL, NULL);
	else
		cb(r->arg, STORE_NEW, r->args.p, first[0] != '\0' ? first : NULL);
}

/* "dlv_" + 32 random hex digits. The dedup key already keeps an event from
 * being scheduled twice; an event recorded again after its dedup key expired
 * (a manual re-send a month later) gets new deliveries, never old hashes. */
static int
delivery_id(char out[37])
{
	unsigned char rnd[16];

	if (crypto_random(rnd, sizeof(rnd)) == -1)
		return -1;
	memcpy(out, "dlv_", 4);
	hex_lower(out + 4, rnd, sizeof(rnd));
	return 0;
}

int
store_record(struct store *s, const struct record *rec, store_record_cb *cb, void *arg)
{
	const struct event *ev = rec->ev;
	int64_t now = now_ms();
	struct store_req *r;
	char(*dids)[37] = NULL;
	size_t i;
	int rc;

	if (ev->id[0] == '\0')
		return -1;
	r = store_req_new(s, SCRIPT_RECORD, 7 + 2 * rec->nhooks + 11 + 5 * rec->nhooks,
	    strlen(rec->json) + 512 + 160 * rec->nhooks, record_done, arg);
	if (r == NULL)
		return -1;
	r->cb.record = cb;
	if (rec->nhooks > 0 && (dids = calloc(rec->nhooks, sizeof(*dids))) == NULL) {
		store_req_free(r);
		return -1;
	}
	for (i = 0; i < rec->nhooks; i++) {
		if (delivery_id(dids[i]) == -1) {
			free(dids);
			store_req_free(r);
			return -1;
		}
	}

	rc = req_begin(r, (int)(7 + 2 * rec->nhooks));
	rc |= req_cat(r, s->prefix, "dedup:", ev->id, NULL);
	rc |= req_args(r, s->stream_key);
	rc |= req_cat(r, s->prefix, "order:", ev->channel, ":", ev->out_trade_no, NULL);
	rc |= req_cat(r, s->prefix, "ch:", ev->channel, ":orders:due", NULL);
	rc |= req_cat(r, s->prefix, "paid:", ev->channel, ":", ev->out_trade_no, NULL);
	for (i = 0; i < rec->nhooks; i++) {
		rc |= req_cat(r, s->prefix, "delivery:", dids[i], NULL);
		rc |= req_cat(r, s->prefix, "wh:", rec->hooks[i].name, ":due", NULL);
	}
	rc |= req_cat(r, s->prefix, "evd:", ev->id, NULL);
	rc |= req_cat(r, s->prefix, "oix:", ev->channel, ":", ev->out_trade_no, NULL);
	rc |= req_args(r, ev->id);
	rc |= req_args(r, event_type_str(ev->type));
	rc |= req_args(r, ev->channel);
	rc |= req_args(r, ev->out_trade_no);
	rc |= req_args(r, rec->json);
	if (ev->type == EVENT_PAID)
		rc |= req_argll(r, (long long)ev->amount_fen);
	else
		rc |= req_args(r, "");
	rc |= req_args(r, s->dedup_ttl);
	rc |= req_args(r, s->maxlen);
	rc |= req_argll(r, (long long)now);
	rc |= req_args(r, ev->out_trade_no);
	rc |= req_args(r, ev->trade_no);
	for (i = 0; i < rec->nhooks; i++) {
		rc |= req_args(r, rec->hooks[i].name);
		rc |= req_args(r, dids[i]);
		rc |= req_args(r, rec->hooks[i].match_paid ? "1" : "0");
		rc |= req_args(r, rec->hooks[i].match_mismatch ? "1" : "0");
		rc |= req_argll(r, (long long)(now + rec->hooks[i].first_delay_ms));
	}
	free(dids);
	return req_send(r, rc);
}

/* --- deliveries ---------------------------------------------------------- */

static void
claim_done(struct store_req *r, const redisReply *rep)
{
	store_claim_cb *cb = r->cb.claim;
	struct store_claimed *items = NULL;
	size_t i, n = 0;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
		cb(r->arg, -1, NULL, 0);
		return;
	}
	if (rep->elements > 0 && (items = calloc(rep->elements, sizeof(*items))) == NULL) {
		/* Claimed but not reported: the leases expire and they come back. */
		cb(r->arg, -1, NULL, 0);
		return;
	}
	for (i = 0; i < rep->elements; i++) {
		const redisReply *e = rep->element[i];

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 4 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[1]->type != REDIS_REPLY_STRING ||
		    e->element[2]->type != REDIS_REPLY_STRING ||
		    e->element[3]->type != REDIS_REPLY_STRING)
			continue;
		items[n].id = e->element[0]->str;
		items[n].event_id = e->element[1]->str;
		items[n].body = e->element[2]->str;
		items[n].body_len = e->element[2]->len;
		items[n].attempts = strtol(e->element[3]->str, NULL, 10);
		n++;
	}
	cb(r->arg, 0, items, n);
	free(items);
}

int
store_claim(struct store *s, const char *webhook, int max, const char *owner,
    int64_t lease_until_ms, store_claim_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_CLAIM, 6, 256, claim_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.claim = cb;
	rc = req_begin(r, 1);
	rc |= req_cat(r, s->prefix, "wh:", webhook, ":due", NULL);
	rc |= req_argll(r, (long long)now_ms());
	rc |= req_argll(r, (long long)lease_until_ms);
	rc |= req_argll(r, max);
	rc |= req_args(r, owner);
	rc |= req_cat(r, s->prefix, "delivery:", NULL);
	return req_send(r, rc);
}

static void
status_done(struct store_req *r, const redisReply *rep)
{
	store_done_cb *cb = r->cb.done;

	if (cb == NULL)
		return;
	if (rep == NULL)
		cb(r->arg, -1, NULL);
	else if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
		cb(r->arg, 0, rep->str);
	else if (rep->type == REDIS_REPLY_INTEGER)
		cb(r->arg, 0, rep->integer ? "1" : "0");
	else
		cb(r->arg, 0, "");
}

int
store_finish(struct store *s, const struct store_outcome *o, store_done_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_FINISH, 11,
	    256 + (o->error != NULL ? strlen(o->error) : 0), status_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.done = cb;
	rc = req_begin(r, 3);
	rc |= req_cat(r, s->prefix, "wh:", o->webhook, ":due", NULL);
	rc |= req_cat(r, s->prefix, "delivery:", o->id, NULL);
	rc |= req_cat(r, s->prefix, "wh:", o->webhook, ":dead", NULL);
	rc |= req_args(r, o->id);
	rc |= req_args(r, o->owner);
	rc |= req_args(r, o->outcome);
	rc |= req_argll(r, (long long)now_ms());
	rc |= req_argll(r, (long long)o->next_due_ms);
	rc |= req_argll(r, o->http_status);
	rc |= req_args(r, o->error != NULL ? o->error : "");
	/* 0 would make EXPIRE delete the hash at once. */
	rc |= req_argll(r, (long long)(o->retention_s > 0 ? o->retention_s : STORE_RETENTION));
	return req_send(r, rc);
}

int
store_release(struct store *s, const char *webhook, const char *id, const char *owner,
    store_done_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_RELEASE, 5, 256, status_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.done = cb;
	rc = req_begin(r, 2);
	rc |= req_cat(r, s->prefix, "wh:", webhook, ":due", NULL);
	rc |= req_cat(r, s->prefix, "delivery:", id, NULL);
	rc |= req_args(r, id);
	rc |= req_args(r, owner);
	rc |= req_argll(r, (long long)now_ms());
	return req_send(r, rc);
}

/* --- orders and polls ------------------------------------------------------ */

static void
reply_done(struct store_req *r, const redisReply *rep)
{
	r->cb.reply(r->arg, rep);
}

/* A request whose caller takes the raw reply. */
static struct store_req *
reply_req(struct store *s, enum script script, size_t maxargs, size_t bytes, store_reply_cb *cb,
    void *arg)
{
	struct store_req *r = store_req_new(s, script, maxargs, bytes, reply_done, arg);

	if (r != NULL)
		r->cb.reply = cb;
	return r;
}

int
store_order_register(struct store *s, const char *channel, const char *out_trade_no,
    int64_t amount_fen, int64_t expires_ms, int64_t first_poll_ms, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_ORDER_REGISTER, 9, 512, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, 2);
	rc |= req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	rc |= req_cat(r, s->prefix, "ch:", channel, ":orders:due", NULL);
	rc |= req_args(r, channel);
	rc |= req_args(r, out_trade_no);
	if (amount_fen >= 0)
		rc |= req_argll(r, (long long)amount_fen);
	else
		rc |= req_args(r, "");
	rc |= req_argll(r, (long long)now_ms());
	rc |= req_argll(r, (long long)expires_ms);
	if (first_poll_ms > 0)
		rc |= req_argll(r, (long long)first_poll_ms);
	else
		rc |= req_args(r, "");
	rc |= req_args(r, s->dedup_ttl);
	return req_send(r, rc);
}

int
store_poll_claim(struct store *s, const char *channel, int max, int rate, const char *owner,
    int64_t lease_until_ms, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_POLL_CLAIM, 9, 512, cb, arg);
	int64_t now = now_ms();
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, 2);
	rc |= req_cat(r, s->prefix, "ch:", channel, ":orders:due", NULL);
	rc |= req_cat(r, s->prefix, "ch:", channel, ":polls", NULL);
	rc |= req_argll(r, (long long)now);
	rc |= req_argll(r, (long long)lease_until_ms);
	rc |= req_argll(r, max);
	rc |= req_args(r, owner);
	rc |= req_cat(r, s->prefix, "order:", channel, ":", NULL);
	rc |= req_argll(r, rate);
	rc |= req_args(r, s->dedup_ttl);
	return req_send(r, rc);
}

int
store_poll_one(struct store *s, const char *channel, const char *out_trade_no, const char *owner,
    int64_t lease_until_ms, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_POLL_ONE, 6, 512, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, 2);
	rc |= req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	rc |= req_cat(r, s->prefix, "ch:", channel, ":orders:due", NULL);
	rc |= req_args(r, out_trade_no);
	rc |= req_args(r, owner);
	rc |= req_argll(r, (long long)lease_until_ms);
	rc |= req_argll(r, (long long)now_ms());
	return req_send(r, rc);
}

int
store_poll_done(struct store *s, const char *channel, const char *out_trade_no, const char *owner,
    const char *result, int64_t next_poll_ms, const char *detail, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_POLL_DONE, 9, 512 + strlen(detail), cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, 2);
	rc |= req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	rc |= req_cat(r, s->prefix, "ch:", channel, ":orders:due", NULL);
	rc |= req_args(r, out_trade_no);
	rc |= req_args(r, owner);
	rc |= req_args(r, result);
	rc |= req_argll(r, (long long)now_ms());
	rc |= req_argll(r, (long long)next_poll_ms);
	rc |= req_args(r, detail);
	rc |= req_args(r, s->dedup_ttl);
	return req_send(r, rc);
}

int
store_order_get(struct store *s, const char *channel, const char *out_trade_no, store_reply_cb *cb,
    void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_NONE, 2, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_args(r, "HGETALL");
	rc |= req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	return req_send(r, rc);
}

int
store_sweep_lock(struct store *s, const char *channel, const char *owner, int64_t ms,
    store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_NONE, 6, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_args(r, "SET");
	rc |= req_cat(r, s->prefix, "ch:", channel, ":sweep", NULL);
	rc |= req_args(r, owner);
	rc |= req_args(r, "NX");
	rc |= req_args(r, "PX");
	rc |= req_argll(r, (long long)ms);
	return req_send(r, rc);
}

/* --- operations (admin) -------------------------------------------------- */

int
store_event_get(struct store *s, const char *event_id, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_EVENT_GET, 2, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, 2);
	rc |= req_cat(r, s->prefix, "dedup:", event_id, NULL);
	rc |= req_args(r, s->stream_key);
	return req_send(r, rc);
}

int
store_deliveries_list(struct store *s, const char *webhook, bool dead, int limit,
    store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_DELIVERIES_LIST, 3, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, 1);
	rc |= req_cat(r, s->prefix, "wh:", webhook, dead ? ":dead" : ":due", NULL);
	rc |= req_argll(r, limit);
	rc |= req_cat(r, s->prefix, "delivery:", NULL);
	return req_send(r, rc);
}

int
store_replay(struct store *s, const struct store_replay_req *q, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_REPLAY, 12, 512, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, 1);
	rc |= req_args(r, s->stream_key);
	rc |= req_args(r, q->mode);
	rc |= req_argll(r, (long long)now_ms());
	rc |= req_args(r, s->prefix);
	rc |= req_argll(r, (long long)(q->retention_s > 0 ? q->retention_s : STORE_RETENTION));
	rc |= req_args(r, q->target);
	rc |= req_argll(r, q->max);
	rc |= req_argll(r, (long long)q->since_ms);
	rc |= req_argll(r, (long long)q->until_ms);
	rc |= req_args(r, q->events != NULL ? q->events : "");
	rc |= req_args(r, q->channels != NULL ? q->channels : "*");
	return req_send(r, rc);
}

int
store_counts(struct store *s, const char *const *keys, size_t nkeys, store_reply_cb *cb, void *arg)
{
	/* One MULTI-free pipeline would need several callbacks: a short
	 * script counts them all in one answer. */
	static const char zcards[] =
	    "local out = {}\n"
	    "for i, k in ipairs(KEYS) do out[i] = redis.call('ZCARD', k) end\n"
	    "return out\n";
	struct store_req *r = reply_req(s, SCRIPT_NONE, nkeys + 3, 256 + 64 * nkeys, cb, arg);
	size_t i;
	int rc;

	if (r == NULL)
		return -1;
	rc = req_args(r, "EVAL");
	rc |= req_arg(r, zcards, sizeof(zcards) - 1);
	rc |= req_argll(r, (long long)nkeys);
	for (i = 0; i < nkeys; i++)
		rc |= req_cat(r, s->prefix, keys[i], NULL);
	return req_send(r, rc);
}

int
store_events_find(struct store *s, const char *const *channels, size_t nchannels,
    const char *out_trade_no, int max, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_EVENTS_FIND, nchannels + 3,
	    256 + nchannels * (96 + strlen(out_trade_no)), cb, arg);
	size_t i;
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, (int)nchannels + 1);
	for (i = 0; i < nchannels; i++)
		rc |= req_cat(r, s->prefix, "oix:", channels[i], ":", out_trade_no, NULL);
	rc |= req_args(r, s->stream_key);
	rc |= req_cat(r, s->prefix, "dedup:", NULL);
	rc |= req_argll(r, max);
	return req_send(r, rc);
}

int
store_stream_read(struct store *s, const char *after, int count, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_NONE, 7, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	if (after == NULL) {
		rc = req_args(r, "XREVRANGE");
		rc |= req_args(r, s->stream_key);
		rc |= req_args(r, "+");
		rc |= req_args(r, "-");
		rc |= req_args(r, "COUNT");
		rc |= req_args(r, "1");
	} else {
		rc = req_args(r, "XREAD");
		rc |= req_args(r, "COUNT");
		rc |= req_argll(r, count);
		rc |= req_args(r, "STREAMS");
		rc |= req_args(r, s->stream_key);
		rc |= req_args(r, after);
	}
	return req_send(r, rc);
}

int
store_event_deliveries(struct store *s, const char *event_id, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_EVENT_DELIVERIES, 2, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, 1);
	rc |= req_cat(r, s->prefix, "evd:", event_id, NULL);
	rc |= req_cat(r, s->prefix, "delivery:", NULL);
	return req_send(r, rc);
}

int
store_delivery_get(struct store *s, const char *id, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_NONE, 2, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_args(r, "HGETALL");
	rc |= req_cat(r, s->prefix, "delivery:", id, NULL);
	return req_send(r, rc);
}

int
store_memory(struct store *s, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_NONE, 2, 64, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_args(r, "INFO");
	rc |= req_args(r, "memory");
	return req_send(r, rc);
}

int
store_purge_dead(struct store *s, const char *webhook, int64_t before_ms, long max,
    store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_PURGE, 4, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, 1);
	rc |= req_cat(r, s->prefix, "wh:", webhook, ":dead", NULL);
	rc |= req_argll(r, (long long)before_ms);
	rc |= req_argll(r, max);
	rc |= req_args(r, s->prefix);
	return req_send(r, rc);
}

int
store_sizes(struct store *s, const char *const *keys, size_t nkeys, store_reply_cb *cb, void *arg)
{
	struct store_req *r = reply_req(s, SCRIPT_SIZES, nkeys + 1, 256 + 64 * nkeys, cb, arg);
	size_t i;
	int rc;

	if (r == NULL)
		return -1;
	rc = req_begin(r, (int)nkeys + 1);
	rc |= req_args(r, s->stream_key);
	for (i = 0; i < nkeys; i++)
		rc |= req_cat(r, s->prefix, keys[i], NULL);
	return req_send(r, rc);
}

uint64_t
store_errors(const struct store *s)
{
	return s == NULL ? 0 : s->errors;
}

bool
store_master_known(const struct store *s)
{
	return s != NULL && s->ctx != NULL && s->connected && s->role_ok &&
	    !(s->ctx->c.flags & REDIS_DISCONNECTING);
}

uint64_t
store_failovers(const struct store *s)
{
	return s->failovers;
}
