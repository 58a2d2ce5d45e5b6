/* Operations: the admin API's reads, replays and purges, /metrics' sizes. */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "store_lua.h"

/* --- operations (admin) -------------------------------------------------- */

int
store_event_get(struct store *s, const char *event_id, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_EVENT_GET, 2, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "dedup:", event_id, NULL);
	rc |= store_req_args(r, s->stream_key);
	return store_req_send(r, rc);
}

int
store_deliveries_list(struct store *s, const char *webhook, bool dead, int limit,
    store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_DELIVERIES_LIST, 3, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_begin(r, 1);
	rc |= store_req_cat(r, s->prefix, "wh:", webhook, dead ? ":dead" : ":due", NULL);
	rc |= store_req_argll(r, limit);
	rc |= store_req_cat(r, s->prefix, "delivery:", NULL);
	return store_req_send(r, rc);
}

int
store_replay(struct store *s, const struct store_replay_req *q, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_REPLAY, 12, 512, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_begin(r, 1);
	rc |= store_req_args(r, s->stream_key);
	rc |= store_req_args(r, q->mode);
	rc |= store_req_argll(r, (long long)now_ms());
	rc |= store_req_args(r, s->prefix);
	rc |=
	    store_req_argll(r, (long long)(q->retention_s > 0 ? q->retention_s : STORE_RETENTION));
	rc |= store_req_args(r, q->target);
	rc |= store_req_argll(r, q->max);
	rc |= store_req_argll(r, (long long)q->since_ms);
	rc |= store_req_argll(r, (long long)q->until_ms);
	rc |= store_req_args(r, q->events != NULL ? q->events : "");
	rc |= store_req_args(r, q->channels != NULL ? q->channels : "*");
	return store_req_send(r, rc);
}

int
store_counts(struct store *s, const char *const *keys, size_t nkeys, store_reply_cb *cb, void *arg)
{
	/* One MULTI-free pipeline would need several callbacks: a short
	 * script (src/lua/zcards.lua) counts them all in one answer. */
	struct store_req *r = store_reply_req(s, SCRIPT_NONE, nkeys + 3, 256 + 64 * nkeys, cb, arg);
	size_t i;
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_args(r, "EVAL");
	rc |= store_req_arg(r, lua_zcards, sizeof(lua_zcards) - 1);
	rc |= store_req_argll(r, (long long)nkeys);
	for (i = 0; i < nkeys; i++)
		rc |= store_req_cat(r, s->prefix, keys[i], NULL);
	return store_req_send(r, rc);
}

int
store_events_find(struct store *s, const char *const *channels, size_t nchannels,
    const char *out_trade_no, int max, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_EVENTS_FIND, nchannels + 3,
	    256 + nchannels * (96 + strlen(out_trade_no)), cb, arg);
	size_t i;
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_begin(r, (int)nchannels + 1);
	for (i = 0; i < nchannels; i++)
		rc |= store_req_cat(r, s->prefix, "oix:", channels[i], ":", out_trade_no, NULL);
	rc |= store_req_args(r, s->stream_key);
	rc |= store_req_cat(r, s->prefix, "dedup:", NULL);
	rc |= store_req_argll(r, max);
	return store_req_send(r, rc);
}

int
store_stream_read(struct store *s, const char *after, int count, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_NONE, 7, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	if (after == NULL) {
		rc = store_req_args(r, "XREVRANGE");
		rc |= store_req_args(r, s->stream_key);
		rc |= store_req_args(r, "+");
		rc |= store_req_args(r, "-");
		rc |= store_req_args(r, "COUNT");
		rc |= store_req_args(r, "1");
	} else {
		rc = store_req_args(r, "XREAD");
		rc |= store_req_args(r, "COUNT");
		rc |= store_req_argll(r, count);
		rc |= store_req_args(r, "STREAMS");
		rc |= store_req_args(r, s->stream_key);
		rc |= store_req_args(r, after);
	}
	return store_req_send(r, rc);
}

int
store_event_deliveries(struct store *s, const char *event_id, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_EVENT_DELIVERIES, 2, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_begin(r, 1);
	rc |= store_req_cat(r, s->prefix, "evd:", event_id, NULL);
	rc |= store_req_cat(r, s->prefix, "delivery:", NULL);
	return store_req_send(r, rc);
}

int
store_delivery_get(struct store *s, const char *id, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_NONE, 2, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_args(r, "HGETALL");
	rc |= store_req_cat(r, s->prefix, "delivery:", id, NULL);
	return store_req_send(r, rc);
}

int
store_memory(struct store *s, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_NONE, 2, 64, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_args(r, "INFO");
	rc |= store_req_args(r, "memory");
	return store_req_send(r, rc);
}

int
store_purge_dead(struct store *s, const char *webhook, int64_t before_ms, long max,
    store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_PURGE, 4, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_begin(r, 1);
	rc |= store_req_cat(r, s->prefix, "wh:", webhook, ":dead", NULL);
	rc |= store_req_argll(r, (long long)before_ms);
	rc |= store_req_argll(r, max);
	rc |= store_req_args(r, s->prefix);
	return store_req_send(r, rc);
}

int
store_sizes(struct store *s, const char *const *keys, size_t nkeys, store_reply_cb *cb, void *arg)
{
	struct store_req *r =
	    store_reply_req(s, SCRIPT_SIZES, nkeys + 1, 256 + 64 * nkeys, cb, arg);
	size_t i;
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_begin(r, (int)nkeys + 1);
	rc |= store_req_args(r, s->stream_key);
	for (i = 0; i < nkeys; i++)
		rc |= store_req_cat(r, s->prefix, keys[i], NULL);
	return store_req_send(r, rc);
}
