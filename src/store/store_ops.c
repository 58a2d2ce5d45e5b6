/* Operations: the admin API's reads, replays and purges, /metrics' sizes. */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "store_lua.h"

/* --- operations (admin) -------------------------------------------------- */

/* src/store/lua/event_get.lua: {"ok", stream id, field, value, ...}, {"missing"}
 * or {"trimmed", stream id}. */
static void
event_get_done(struct store_req *r, const redisReply *rep)
{
	store_event_get_cb *cb = r->cb.event_get;
	const char *what, *event = NULL;
	size_t i, len = 0;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_STRING) {
		cb(r->arg, STORE_EVENT_FAILED, NULL, NULL, 0);
		return;
	}
	what = rep->element[0]->str;
	if (strcmp(what, "missing") == 0) {
		cb(r->arg, STORE_EVENT_MISSING, NULL, NULL, 0);
		return;
	}
	if (strcmp(what, "trimmed") == 0) {
		cb(r->arg, STORE_EVENT_TRIMMED, NULL, NULL, 0);
		return;
	}
	for (i = 2; i + 1 < rep->elements; i += 2) {
		if (rep->element[i]->str != NULL && strcmp(rep->element[i]->str, "event") == 0) {
			event = rep->element[i + 1]->str;
			len = rep->element[i + 1]->len;
		}
	}
	cb(r->arg, STORE_EVENT_FOUND, rep->elements > 1 ? rep->element[1]->str : NULL, event, len);
}

/* src/store/lua/deliveries_list.lua and event_deliveries.lua: {{id, "", field,
 * value, ...}, ...}. */
static void
deliveries_done(struct store_req *r, const redisReply *rep)
{
	store_deliveries_cb *cb = r->cb.deliveries;
	struct store_delivery_row *rows = NULL;
	struct store_field **fields = NULL;
	size_t i, n = 0;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
		cb(r->arg, -1, NULL, 0);
		return;
	}
	if (rep->elements > 0 &&
	    ((rows = calloc(rep->elements, sizeof(*rows))) == NULL ||
		(fields = calloc(rep->elements, sizeof(*fields))) == NULL)) {
		cb(r->arg, -1, NULL, 0);
		goto out;
	}
	for (i = 0; i < rep->elements; i++) {
		const redisReply *row = rep->element[i];

		if (row->type != REDIS_REPLY_ARRAY || row->elements < 2)
			continue;
		if (store_fields_decode(row, 2, &fields[n], &rows[n].nfields) == -1) {
			cb(r->arg, -1, NULL, 0);
			goto out;
		}
		rows[n].id = row->element[0]->str;
		rows[n].fields = fields[n];
		n++;
	}
	cb(r->arg, 0, rows, n);
out:
	for (i = 0; fields != NULL && i < n; i++)
		free(fields[i]);
	free(fields);
	free(rows);
}

/* src/store/lua/replay.lua: {n, delivery id or ""}, or {-1, why}. */
static void
replay_done(struct store_req *r, const redisReply *rep)
{
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER)
		r->cb.replay(r->arg, -1, 0, NULL);
	else
		r->cb.replay(r->arg, 0, rep->element[0]->integer, rep->element[1]->str);
}

/* An array of integers: src/store/lua/zcards.lua, src/store/lua/sizes.lua. */
static void
numbers_done(struct store_req *r, const redisReply *rep)
{
	long long *v = NULL;
	size_t i;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
	    (rep->elements > 0 && (v = calloc(rep->elements, sizeof(*v))) == NULL)) {
		r->cb.numbers(r->arg, -1, NULL, 0);
		return;
	}
	for (i = 0; i < rep->elements; i++) {
		if (rep->element[i]->type != REDIS_REPLY_INTEGER) {
			r->cb.numbers(r->arg, -1, NULL, 0);
			free(v);
			return;
		}
		v[i] = rep->element[i]->integer;
	}
	r->cb.numbers(r->arg, 0, v, rep->elements);
	free(v);
}

/* src/store/lua/events_find.lua: {{event id, stream id or "", event JSON or ""},
 * ...}. */
static void
events_find_done(struct store_req *r, const redisReply *rep)
{
	store_events_find_cb *cb = r->cb.events_find;
	struct store_found_event *ev = NULL;
	size_t i, n = 0;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
	    (rep->elements > 0 && (ev = calloc(rep->elements, sizeof(*ev))) == NULL)) {
		cb(r->arg, -1, NULL, 0);
		return;
	}
	for (i = 0; i < rep->elements; i++) {
		const redisReply *row = rep->element[i];

		if (row->type != REDIS_REPLY_ARRAY || row->elements < 3 ||
		    row->element[0]->str == NULL)
			continue;
		ev[n].id = row->element[0]->str;
		ev[n].stream_id = row->element[1]->str != NULL ? row->element[1]->str : "";
		ev[n].stream_id_len = row->element[1]->str != NULL ? row->element[1]->len : 0;
		ev[n].event = row->element[2]->str != NULL ? row->element[2]->str : "";
		ev[n].event_len = row->element[2]->str != NULL ? row->element[2]->len : 0;
		n++;
	}
	cb(r->arg, 0, ev, n);
	free(ev);
}

/* Stream entries [[id, [field, value, ...]], ...] to cb. */
static void
entries_answer(struct store_req *r, const redisReply *entries)
{
	store_entries_cb *cb = r->cb.entries;
	struct store_entry *e = NULL;
	struct store_field **fields = NULL;
	size_t i, n = 0;

	if (entries == NULL || entries->type != REDIS_REPLY_ARRAY || entries->elements == 0) {
		cb(r->arg, 0, NULL, 0);
		return;
	}
	if ((e = calloc(entries->elements, sizeof(*e))) == NULL ||
	    (fields = calloc(entries->elements, sizeof(*fields))) == NULL) {
		cb(r->arg, -1, NULL, 0);
		goto out;
	}
	for (i = 0; i < entries->elements; i++) {
		const redisReply *x = entries->element[i];

		if (x->type != REDIS_REPLY_ARRAY || x->elements < 2 || x->element[0]->str == NULL)
			continue;
		if (store_fields_decode(x->element[1], 0, &fields[n], &e[n].nfields) == -1) {
			cb(r->arg, -1, NULL, 0);
			goto out;
		}
		e[n].id = x->element[0]->str;
		e[n].fields = fields[n];
		n++;
	}
	cb(r->arg, 0, e, n);
out:
	for (i = 0; fields != NULL && i < n; i++)
		free(fields[i]);
	free(fields);
	free(e);
}

/* XREAD: nil, or [[stream, [[id, [f, v, ...]], ...]]]. */
static void
stream_read_done(struct store_req *r, const redisReply *rep)
{
	if (rep == NULL) {
		r->cb.entries(r->arg, -1, NULL, 0);
		return;
	}
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
	    rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2)
		entries_answer(r, rep->element[0]->element[1]);
	else
		entries_answer(r, NULL);
}

/* XREVRANGE: [[id, [f, v, ...]], ...]. */
static void
stream_last_done(struct store_req *r, const redisReply *rep)
{
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY)
		r->cb.entries(r->arg, -1, NULL, 0);
	else
		entries_answer(r, rep);
}

/* HGETALL: a hash's fields; none when there is no such key. */
static void
hash_done(struct store_req *r, const redisReply *rep)
{
	struct store_field *f;
	size_t n;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
	    store_fields_decode(rep, 0, &f, &n) == -1) {
		r->cb.fields(r->arg, -1, NULL, 0);
		return;
	}
	r->cb.fields(r->arg, 0, f, n);
	free(f);
}

/* INFO: a bulk string. */
static void
info_done(struct store_req *r, const redisReply *rep)
{
	r->cb.info(r->arg,
	    rep != NULL && rep->type == REDIS_REPLY_STRING && rep->str != NULL ? rep->str : NULL);
}

/* src/store/lua/dead_purge.lua: {purged, more}. */
static void
purge_done(struct store_req *r, const redisReply *rep)
{
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER ||
	    rep->element[1]->type != REDIS_REPLY_INTEGER)
		r->cb.purge(r->arg, -1, 0, false);
	else
		r->cb.purge(r->arg, 0, rep->element[0]->integer, rep->element[1]->integer != 0);
}

int
store_event_get(struct store *s, const char *event_id, store_event_get_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_EVENT_GET, 2, 256, event_get_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.event_get = cb;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "dedup:", event_id, NULL);
	rc |= store_req_args(r, s->stream_key);
	return store_req_send(r, rc);
}

int
store_deliveries_list(struct store *s, const char *webhook, bool dead, int limit,
    store_deliveries_cb *cb, void *arg)
{
	struct store_req *r =
	    store_req_new(s, SCRIPT_DELIVERIES_LIST, 3, 256, deliveries_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.deliveries = cb;
	rc = store_req_begin(r, 1);
	rc |= store_req_cat(r, s->prefix, "wh:", webhook, dead ? ":dead" : ":due", NULL);
	rc |= store_req_argll(r, limit);
	rc |= store_req_cat(r, s->prefix, "delivery:", NULL);
	return store_req_send(r, rc);
}

int
store_replay(struct store *s, const struct store_replay_req *q, store_replay_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_REPLAY, 12, 512, replay_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.replay = cb;
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
store_counts(struct store *s, const char *const *keys, size_t nkeys, store_numbers_cb *cb,
    void *arg)
{
	/* One MULTI-free pipeline would need several callbacks: a short
	 * script (src/store/lua/zcards.lua) counts them all in one answer. */
	struct store_req *r =
	    store_req_new(s, SCRIPT_NONE, nkeys + 3, 256 + 64 * nkeys, numbers_done, arg);
	size_t i;
	int rc;

	if (r == NULL)
		return -1;
	r->cb.numbers = cb;
	rc = store_req_args(r, "EVAL");
	rc |= store_req_arg(r, lua_zcards, sizeof(lua_zcards) - 1);
	rc |= store_req_argll(r, (long long)nkeys);
	for (i = 0; i < nkeys; i++)
		rc |= store_req_cat(r, s->prefix, keys[i], NULL);
	return store_req_send(r, rc);
}

int
store_events_find(struct store *s, const char *const *channels, size_t nchannels,
    const char *out_trade_no, int max, store_events_find_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_EVENTS_FIND, nchannels + 3,
	    256 + nchannels * (96 + strlen(out_trade_no)), events_find_done, arg);
	size_t i;
	int rc;

	if (r == NULL)
		return -1;
	r->cb.events_find = cb;
	rc = store_req_begin(r, (int)nchannels + 1);
	for (i = 0; i < nchannels; i++)
		rc |= store_req_cat(r, s->prefix, "oix:", channels[i], ":", out_trade_no, NULL);
	rc |= store_req_args(r, s->stream_key);
	rc |= store_req_cat(r, s->prefix, "dedup:", NULL);
	rc |= store_req_argll(r, max);
	return store_req_send(r, rc);
}

int
store_stream_read(struct store *s, const char *after, int count, store_entries_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_NONE, 7, 256,
	    after == NULL ? stream_last_done : stream_read_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.entries = cb;
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
store_event_deliveries(struct store *s, const char *event_id, store_deliveries_cb *cb, void *arg)
{
	struct store_req *r =
	    store_req_new(s, SCRIPT_EVENT_DELIVERIES, 2, 256, deliveries_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.deliveries = cb;
	rc = store_req_begin(r, 1);
	rc |= store_req_cat(r, s->prefix, "evd:", event_id, NULL);
	rc |= store_req_cat(r, s->prefix, "delivery:", NULL);
	return store_req_send(r, rc);
}

int
store_delivery_get(struct store *s, const char *id, store_fields_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_NONE, 2, 256, hash_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.fields = cb;
	rc = store_req_args(r, "HGETALL");
	rc |= store_req_cat(r, s->prefix, "delivery:", id, NULL);
	return store_req_send(r, rc);
}

int
store_memory(struct store *s, store_info_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_NONE, 2, 64, info_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.info = cb;
	rc = store_req_args(r, "INFO");
	rc |= store_req_args(r, "memory");
	return store_req_send(r, rc);
}

int
store_purge_dead(struct store *s, const char *webhook, int64_t before_ms, long max,
    store_purge_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_PURGE, 4, 256, purge_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.purge = cb;
	rc = store_req_begin(r, 1);
	rc |= store_req_cat(r, s->prefix, "wh:", webhook, ":dead", NULL);
	rc |= store_req_argll(r, (long long)before_ms);
	rc |= store_req_argll(r, max);
	rc |= store_req_args(r, s->prefix);
	return store_req_send(r, rc);
}

int
store_sizes(struct store *s, const char *const *keys, size_t nkeys, store_numbers_cb *cb, void *arg)
{
	struct store_req *r =
	    store_req_new(s, SCRIPT_SIZES, nkeys + 1, 256 + 64 * nkeys, numbers_done, arg);
	size_t i;
	int rc;

	if (r == NULL)
		return -1;
	r->cb.numbers = cb;
	rc = store_req_begin(r, (int)nkeys + 1);
	rc |= store_req_args(r, s->stream_key);
	for (i = 0; i < nkeys; i++)
		rc |= store_req_cat(r, s->prefix, keys[i], NULL);
	return store_req_send(r, rc);
}
