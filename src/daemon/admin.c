#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <jansson.h>

#include "account.h"
#include "amount.h"
#include "backoff.h"
#include "config.h"
#include "crypto.h"
#include "event.h"
#include "family.h"
#include "form.h"
#include "ingest.h"
#include "testcb.h"
#include "daemon.h"
#include "config_build.h"
#include "conns.h"
#include "deliver.h"
#include "log.h"
#include "metrics.h"
#include "payments.h"
#include "poll.h"
#include "refunds.h"
#include "reply.h"
#include "store.h"

/* The admin listener, owned by payrelayd.c (env->admin). */
struct admin {
	struct env *env;
	struct evhttp *http;
	struct conns *conns; /* the listener and its connections */
};

static bool
admin_authorized(struct env *env, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	const char *token = env->cfg->admin_token;

	if (token == NULL || h == NULL || strncmp(h, "Bearer ", 7) != 0)
		return false;
	return ct_equal(h + 7, strlen(h + 7), token, strlen(token));
}

/* Copies field/value pairs into o: the fields named in `numeric` as
 * integers, the rest as strings (null when not UTF-8). */
static void
pairs_to_json(json_t *o, const struct store_field *f, size_t nf, const char *const *numeric)
{
	size_t i;

	for (i = 0; i < nf; i++) {
		const char *k = f[i].name, *v = f[i].value;
		const char *const *n;
		bool num = false;

		for (n = numeric; *n != NULL; n++)
			num |= strcmp(k, *n) == 0;
		if (num && *v == '\0') {
			/* amount_fen of an order registered without amount */
			json_object_set_new(o, k, json_null());
		} else if (num) {
			json_object_set_new(o, k, json_integer(strtoll(v, NULL, 10)));
		} else {
			json_t *js = json_string(v);

			json_object_set_new(o, k, js != NULL ? js : json_null());
		}
	}
}

/* The order hash (HGETALL) as JSON: numbers as numbers, the amount also
 * in yuan. NULL when it has no fields (no such order). */
static json_t *
order_json(const struct store_field *f, size_t nf)
{
	static const char *const numeric[] = { "amount_fen", "polls", "created_ms", "expires_ms",
		"next_poll_ms", "last_poll_ms", "paid_at_ms", "expired_ms", "lease_until_ms",
		"pay_created_ms", NULL };
	json_t *o;

	if (nf == 0 || (o = json_object()) == NULL)
		return NULL;
	pairs_to_json(o, f, nf, numeric);
	/* The same name as the registration answer uses. */
	if (json_object_get(o, "expires_ms") != NULL) {
		json_object_set(o, "expires_at_ms", json_object_get(o, "expires_ms"));
		json_object_del(o, "expires_ms");
	}
	if (json_is_integer(json_object_get(o, "amount_fen"))) {
		char amt[32];

		amount_format(json_integer_value(json_object_get(o, "amount_fen")), amt,
		    sizeof(amt));
		json_object_set_new(o, "amount", json_string(amt));
	}
	return o;
}

/* An admin request waiting for Redis or a poll. */
struct areq {
	struct env *env;
	struct evhttp_request *req;
	char channel[65];
	char out_trade_no[ADMIN_MAX_OUT_TRADE_NO + 1];
	int64_t amount_fen;
	int64_t expires_ms;
	char result[16];
	char detail[160];
};

static void
order_get_reply(void *arg, int rc, const struct store_field *f, size_t nf)
{
	struct areq *a = arg;
	json_t *o;

	if (rc == -1)
		reply_error(a->req, 503, "redis failed");
	else if ((o = order_json(f, nf)) == NULL)
		reply_error(a->req, 404, "no such order");
	else if (a->result[0] != '\0')
		reply_json(a->req, 200,
		    json_pack("{s:s,s:s,s:o}", "result", a->result, "detail", a->detail, "order",
			o));
	else
		reply_json(a->req, 200, o);
	free(a);
}

static void
order_register_reply(void *arg, enum store_order_reg what, const char *state,
    int64_t registered_fen)
{
	struct areq *a = arg;
	char amt[32];

	if (what == STORE_ORDER_FAILED) {
		reply_error(a->req, 503, "redis failed");
		free(a);
		return;
	}
	amount_format(a->amount_fen, amt, sizeof(amt));
	if (what == STORE_ORDER_CONFLICT) {
		reply_json(a->req, 409,
		    json_pack("{s:s,s:s,s:I}", "error",
			"the order is registered with another amount", "state", state,
			"registered_amount_fen", (json_int_t)registered_fen));
		free(a);
		return;
	}
	if (what == STORE_ORDER_EXISTS) {
		/* Registered before with the same amount: answer what is stored. */
		if (store_order_get(a->env->store, a->channel, a->out_trade_no, order_get_reply,
			a) == 0)
			return;
		reply_error(a->req, 503, "redis is not ready");
		free(a);
		return;
	}
	if (what == STORE_ORDER_CREATED)
		log_info("order registered", "channel=%s out_trade_no=\"%.64s\" amount_fen=%lld",
		    a->channel, a->out_trade_no, (long long)a->amount_fen);
	reply_json(a->req, what == STORE_ORDER_CREATED ? 201 : 200,
	    json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:b}", "channel", a->channel, "out_trade_no",
		a->out_trade_no, "amount", amt, "amount_fen", (json_int_t)a->amount_fen, "state",
		state, "expires_at_ms", (json_int_t)a->expires_ms, "created",
		what == STORE_ORDER_CREATED));
	free(a);
}

static void
admin_register(struct env *env, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_t *body, *jexp;
	json_error_t jerr;
	const char *channel, *out, *amount;
	const struct channel *ch;
	struct areq *a;
	json_int_t expires_in = 86400;
	int64_t now = now_ms(), fen;
	size_t i;

	body =
	    json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
	if (body == NULL || !json_is_object(body)) {
		json_decref(body);
		reply_error(req, 400, "the body must be a JSON object");
		return;
	}
	channel = json_string_value(json_object_get(body, "channel"));
	out = json_string_value(json_object_get(body, "out_trade_no"));
	amount = json_string_value(json_object_get(body, "amount"));
	jexp = json_object_get(body, "expires_in");
	if (channel == NULL || out == NULL || amount == NULL) {
		reply_error(req, 400,
		    "channel, out_trade_no and amount (a decimal string) are required");
		goto out;
	}
	if ((ch = config_channel(env->cfg, channel)) == NULL) {
		reply_error(req, 404, "unknown channel");
		goto out;
	}
	if (*out == '\0' || strlen(out) > ADMIN_MAX_OUT_TRADE_NO || strchr(out, '/') != NULL) {
		reply_error(req, 400, "out_trade_no must be 1 to 128 bytes, without '/'");
		goto out;
	}
	for (i = 0; out[i] != '\0'; i++) {
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f) {
			reply_error(req, 400, "out_trade_no must not contain control characters");
			goto out;
		}
	}
	if (amount_parse(amount, strlen(amount), &fen) == -1) {
		reply_error(req, 400, "amount must be a decimal string of yuan, like \"1.00\"");
		goto out;
	}
	if (jexp != NULL) {
		if (!json_is_integer(jexp) || json_integer_value(jexp) < 1 ||
		    json_integer_value(jexp) > ADMIN_MAX_EXPIRES_IN) {
			reply_error(req, 400, "expires_in must be whole seconds from 1 to 2592000");
			goto out;
		}
		expires_in = json_integer_value(jexp);
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		reply_error(req, 503, "out of memory");
		goto out;
	}
	a->env = env;
	a->req = req;
	snprintf(a->channel, sizeof(a->channel), "%s", ch->name);
	snprintf(a->out_trade_no, sizeof(a->out_trade_no), "%s", out);
	a->amount_fen = fen;
	a->expires_ms = now + (int64_t)expires_in * 1000;
	if (store_order_register(env->store, ch->name, out, fen, a->expires_ms,
		ch->api_base != NULL ? backoff_first_poll_ms(now, ch->poll_after, a->expires_ms)
				     : 0,
		order_register_reply, a) == -1) {
		free(a);
		reply_error(req, 503, "redis is not ready");
	}
out:
	json_decref(body);
}

static void
poll_now_done(void *arg, enum poll_now_status st, const char *result, const char *detail)
{
	struct areq *a = arg;

	switch (st) {
	case POLL_NOW_DONE:
		snprintf(a->result, sizeof(a->result), "%s", result);
		snprintf(a->detail, sizeof(a->detail), "%s", detail);
		if (store_order_get(a->env->store, a->channel, a->out_trade_no, order_get_reply,
			a) == 0)
			return;
		reply_json(a->req, 200, json_pack("{s:s,s:s}", "result", result, "detail", detail));
		break;
	case POLL_NOW_MISSING:
		reply_error(a->req, 404, "no such order");
		break;
	case POLL_NOW_SETTLED:
		reply_json(a->req, 409,
		    json_pack("{s:s,s:s}", "error", "the order is not pending", "state", result));
		break;
	case POLL_NOW_BUSY:
		reply_error(a->req, 409, "the order is being polled");
		break;
	case POLL_NOW_FAILED:
		reply_error(a->req, 503, detail);
		break;
	}
	free(a);
}

/* /v1/orders/{channel}/{out_trade_no}[/poll] */
static void
admin_order(struct env *env, struct evhttp_request *req, const char *rest)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *slash = strchr(rest, '/');
	char *out = NULL, channel[65];
	bool poll = false;
	struct areq *a;
	size_t n;

	if (slash == NULL || (size_t)(slash - rest) >= sizeof(channel)) {
		reply_error(req, 404, "no such endpoint");
		return;
	}
	memcpy(channel, rest, (size_t)(slash - rest));
	channel[slash - rest] = '\0';
	if ((out = evhttp_uridecode(slash + 1, 0, &n)) == NULL) {
		reply_error(req, 400, "bad out_trade_no");
		return;
	}
	if (n > 5 && strcmp(out + n - 5, "/poll") == 0) {
		out[n - 5] = '\0';
		poll = true;
	}
	if (config_channel(env->cfg, channel) == NULL) {
		reply_error(req, 404, "unknown channel");
		goto done;
	}
	if (*out == '\0' || strlen(out) > ADMIN_MAX_OUT_TRADE_NO || strchr(out, '/') != NULL) {
		reply_error(req, 400, "bad out_trade_no");
		goto done;
	}
	if ((poll && m != EVHTTP_REQ_POST) || (!poll && m != EVHTTP_REQ_GET)) {
		reply_error(req, 405, "method not allowed");
		goto done;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		reply_error(req, 503, "out of memory");
		goto done;
	}
	a->env = env;
	a->req = req;
	snprintf(a->channel, sizeof(a->channel), "%s", channel);
	snprintf(a->out_trade_no, sizeof(a->out_trade_no), "%s", out);
	if (poll) {
		if (config_channel(env->cfg, channel)->api_base == NULL) {
			free(a);
			reply_error(req, 400, "the channel has no api_base: it cannot be polled");
		} else if (poll_now(env->poller, channel, out, poll_now_done, a) == -1) {
			free(a);
			reply_error(req, 503, "redis is not ready");
		}
	} else if (store_order_get(env->store, channel, out, order_get_reply, a) == -1) {
		free(a);
		reply_error(req, 503, "redis is not ready");
	}
done:
	free(out);
}

/* --- operations ---------------------------------------------------------- */

static void
event_get_reply(void *arg, enum store_event_get r, const char *stream_id, const char *event,
    size_t event_len)
{
	struct areq *a = arg;
	json_t *o;

	if (r == STORE_EVENT_FAILED) {
		reply_error(a->req, 503, "redis failed");
		goto out;
	}
	if (r == STORE_EVENT_MISSING) {
		reply_error(a->req, 404, "no such event (never recorded, or older than dedup_ttl)");
		goto out;
	}
	if (r == STORE_EVENT_TRIMMED) {
		reply_error(a->req, 404, "the event was trimmed from the stream (maxlen)");
		goto out;
	}
	if (event == NULL || (o = json_loadb(event, event_len, 0, NULL)) == NULL) {
		reply_error(a->req, 500, "the stream entry has no event");
		goto out;
	}
	json_object_set_new(o, "stream_id", json_string(stream_id));
	reply_json(a->req, 200, o);
out:
	free(a);
}

/* Whether `id` is `prefix` (4 bytes: evt_, dlv_) and 32 lowercase hex
 * digits, as payrelayd makes event and delivery ids. */
static bool
id_valid(const char *id, const char *prefix)
{
	size_t i;

	if (strncmp(id, prefix, 4) != 0 || strlen(id) != 36)
		return false;
	for (i = 4; id[i] != '\0'; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static void
admin_event(struct env *env, struct evhttp_request *req, const char *id)
{
	struct areq *a;

	if (!id_valid(id, "evt_")) {
		reply_error(req, 400, "an event id is evt_ and 32 hex digits");
		return;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		reply_error(req, 503, "out of memory");
		return;
	}
	a->env = env;
	a->req = req;
	if (store_event_get(env->store, id, event_get_reply, a) == -1) {
		free(a);
		reply_error(req, 503, "redis is not ready");
	}
}

/* A listing across webhooks: one Redis answer per webhook, joined. */
struct listing {
	struct env *env;
	struct evhttp_request *req;
	json_t *rows;
	size_t waiting;
	bool failed;
};

static void
deliveries_reply(void *arg, int rc, const struct store_delivery_row *rows, size_t n)
{
	static const char *const numeric[] = { "attempts", "last_status", "created_ms", "due_ms",
		"dead_ms", "delivered_ms", "last_attempt_ms", NULL };
	struct listing *l = arg;
	size_t i;

	if (rc == -1)
		l->failed = true;
	for (i = 0; i < n; i++) {
		json_t *o;

		if ((o = json_object()) == NULL)
			continue;
		json_object_set_new(o, "id", json_string(rows[i].id));
		pairs_to_json(o, rows[i].fields, rows[i].nfields, numeric);
		json_array_append_new(l->rows, o);
	}
	if (--l->waiting > 0)
		return;
	if (l->failed)
		reply_error(l->req, 503, "redis failed");
	else
		reply_json(l->req, 200, json_pack("{s:O}", "deliveries", l->rows));
	json_decref(l->rows);
	free(l);
}

static const char *
query_param(struct evkeyvalq *q, const char *name)
{
	return evhttp_find_header(q, name);
}

static void
admin_deliveries(struct env *env, struct evhttp_request *req)
{
	const struct config *cfg = env->cfg;
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq q;
	const char *state, *webhook, *lim;
	struct listing *l;
	long limit = 100;
	bool dead;
	size_t i;

	TAILQ_INIT(&q);
	if (query != NULL && evhttp_parse_query_str(query, &q) == -1) {
		reply_error(req, 400, "bad query string");
		return;
	}
	state = query_param(&q, "state");
	webhook = query_param(&q, "webhook");
	lim = query_param(&q, "limit");
	if (state != NULL && strcmp(state, "dead") != 0 && strcmp(state, "pending") != 0) {
		reply_error(req, 400, "state is dead or pending");
		goto out;
	}
	dead = state == NULL || strcmp(state, "dead") == 0;
	if (lim != NULL && ((limit = strtol(lim, NULL, 10)) < 1 || limit > 10000)) {
		reply_error(req, 400, "limit is from 1 to 10000");
		goto out;
	}
	if (webhook != NULL && !config_name_valid(webhook)) {
		reply_error(req, 404, "unknown webhook");
		goto out;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL || (l->rows = json_array()) == NULL) {
		free(l);
		reply_error(req, 503, "out of memory");
		goto out;
	}
	l->env = env;
	l->req = req;
	for (i = 0; i < cfg->nwebhooks; i++) {
		if (webhook != NULL && strcmp(webhook, cfg->webhooks[i].name) != 0)
			continue;
		if (store_deliveries_list(env->store, cfg->webhooks[i].name, dead, (int)limit,
			deliveries_reply, l) == 0)
			l->waiting++;
		else
			l->failed = true;
	}
	if (l->waiting == 0) {
		if (l->failed)
			reply_error(req, 503, "redis is not ready");
		else if (webhook != NULL)
			reply_error(req, 404, "unknown webhook");
		else
			reply_json(req, 200, json_pack("{s:[]}", "deliveries"));
		json_decref(l->rows);
		free(l);
	}
out:
	evhttp_clear_headers(&q);
}

static void
replay_reply(void *arg, int rc, long long n, const char *text)
{
	struct areq *a = arg;

	if (rc == -1) {
		reply_error(a->req, 503, "redis failed");
		goto out;
	}
	if (n < 0) {
		const char *why = text != NULL ? text : "refused";

		reply_error(a->req, strncmp(why, "no such", 7) == 0 ? 404 : 409, why);
		goto out;
	}
	log_info("replay", "mode=%s target=\"%.64s\" deliveries=%lld", a->result, a->detail, n);
	if (strcmp(a->result, "one") == 0)
		reply_json(a->req, 201,
		    json_pack("{s:s,s:s}", "delivery", text != NULL ? text : "", "replay_of",
			a->detail));
	else
		reply_json(a->req, 200, json_pack("{s:I}", "replayed", (json_int_t)n));
	deliver_kick(a->env->deliver);
out:
	free(a);
}

static void
admin_replay_send(struct env *env, struct evhttp_request *req, struct store_replay_req *q)
{
	struct areq *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		reply_error(req, 503, "out of memory");
		return;
	}
	a->env = env;
	a->req = req;
	snprintf(a->result, sizeof(a->result), "%s", q->mode);
	snprintf(a->detail, sizeof(a->detail), "%s", q->target);
	q->retention_s = env->cfg->delivery_retention;
	if (store_replay(env->store, q, replay_reply, a) == -1) {
		free(a);
		reply_error(req, 503, "redis is not ready");
	}
}

/* Dead deliveries purged per Redis call: each call blocks Redis (and so
 * every callback) for at most this many deletes. */
#define ADMIN_PURGE_BATCH 500

struct purge {
	struct env *env;
	struct evhttp_request *req;
	char (*names)[65]; /* copied: a reload may free the config meanwhile */
	size_t n, i;
	int64_t before_ms;
	long long total, here;
	json_t *by_webhook;
};

static void purge_next(struct purge *p);

static void
purge_free(struct purge *p)
{
	json_decref(p->by_webhook);
	free(p->names);
	free(p);
}

static void
purge_reply(void *arg, int rc, long long purged, bool more)
{
	struct purge *p = arg;

	if (rc == -1) {
		/* What went already is gone: say how much. */
		log_warnx("purge stopped", "purged=%lld reason=\"redis failed\"", p->total);
		reply_json(p->req, 503,
		    json_pack("{s:s,s:I}", "error", "redis failed", "purged",
			(json_int_t)p->total));
		purge_free(p);
		return;
	}
	p->here += purged;
	p->total += purged;
	if (!more) {
		json_object_set_new(p->by_webhook, p->names[p->i], json_integer(p->here));
		p->here = 0;
		p->i++;
	}
	purge_next(p);
}

static void
purge_next(struct purge *p)
{
	if (p->i == p->n) {
		log_info("dead deliveries purged", "before_ms=%lld deliveries=%lld",
		    (long long)p->before_ms, p->total);
		reply_json(p->req, 200,
		    json_pack("{s:I,s:O}", "purged", (json_int_t)p->total, "webhooks",
			p->by_webhook));
		purge_free(p);
		return;
	}
	if (store_purge_dead(p->env->store, p->names[p->i], p->before_ms, ADMIN_PURGE_BATCH,
		purge_reply, p) == -1) {
		reply_json(p->req, 503,
		    json_pack("{s:s,s:I}", "error", "redis is not ready", "purged",
			(json_int_t)p->total));
		purge_free(p);
	}
}

/* POST /v1/deliveries/purge {"state": "dead", "before_ms", "webhook"?}:
 * deletes dead deliveries that died before before_ms, of one webhook (which
 * may be one no longer configured: its dead set stays until purged) or of
 * every configured webhook. */
static void
admin_purge(struct env *env, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in),
	    JSON_REJECT_DUPLICATES, NULL);
	const char *state, *webhook;
	json_t *before, *wh;
	struct purge *p = NULL;
	size_t i, n;

	if (body == NULL || !json_is_object(body)) {
		reply_error(req, 400, "the body must be a JSON object");
		goto out;
	}
	state = json_string_value(json_object_get(body, "state"));
	before = json_object_get(body, "before_ms");
	wh = json_object_get(body, "webhook");
	webhook = json_string_value(wh);
	if (state == NULL || strcmp(state, "dead") != 0) {
		reply_error(req, 400, "state must be \"dead\": only dead deliveries are purged");
		goto out;
	}
	if (!json_is_integer(before) || json_integer_value(before) <= 0) {
		reply_error(req, 400, "before_ms must be a positive integer (unix milliseconds)");
		goto out;
	}
	if (wh != NULL && (webhook == NULL || !config_name_valid(webhook))) {
		reply_error(req, 400, "webhook must be a webhook name");
		goto out;
	}
	n = webhook != NULL ? 1 : env->cfg->nwebhooks;
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (n > 0 && (p->names = calloc(n, sizeof(*p->names))) == NULL) ||
	    (p->by_webhook = json_object()) == NULL) {
		if (p != NULL)
			purge_free(p);
		reply_error(req, 503, "out of memory");
		goto out;
	}
	p->env = env;
	p->req = req;
	p->n = n;
	p->before_ms = json_integer_value(before);
	for (i = 0; i < n; i++)
		snprintf(p->names[i], sizeof(p->names[i]), "%s",
		    webhook != NULL ? webhook : env->cfg->webhooks[i].name);
	purge_next(p);
out:
	json_decref(body);
}

/* POST /v1/deliveries/{id}/replay */
static void
admin_replay_one(struct env *env, struct evhttp_request *req, const char *rest)
{
	const char *slash = strchr(rest, '/');
	struct store_replay_req q;
	char id[64];

	if (slash == NULL || strcmp(slash, "/replay") != 0 ||
	    (size_t)(slash - rest) >= sizeof(id) || slash == rest) {
		reply_error(req, 404, "no such endpoint");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_error(req, 405, "method not allowed");
		return;
	}
	memcpy(id, rest, (size_t)(slash - rest));
	id[slash - rest] = '\0';
	memset(&q, 0, sizeof(q));
	q.mode = "one";
	q.target = id;
	q.max = 1;
	admin_replay_send(env, req, &q);
}

/* POST /v1/replay {"webhook", "state": "dead"} or {"webhook", "since_ms", "until_ms"} */
static void
admin_replay_bulk(struct env *env, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in),
	    JSON_REJECT_DUPLICATES, NULL);
	const char *name, *state;
	const struct webhook *w = NULL;
	struct store_replay_req q;
	struct sbuf events, channels;
	size_t i;

	sbuf_init(&events);
	sbuf_init(&channels);
	memset(&q, 0, sizeof(q));
	if (body == NULL || !json_is_object(body) ||
	    (name = json_string_value(json_object_get(body, "webhook"))) == NULL) {
		reply_error(req, 400, "the body must be a JSON object with \"webhook\"");
		goto out;
	}
	for (i = 0; i < env->cfg->nwebhooks; i++)
		if (strcmp(env->cfg->webhooks[i].name, name) == 0)
			w = &env->cfg->webhooks[i];
	if (w == NULL) {
		reply_error(req, 404, "unknown webhook");
		goto out;
	}
	q.target = w->name;
	q.max = 10000;
	state = json_string_value(json_object_get(body, "state"));
	if (state != NULL) {
		if (strcmp(state, "dead") != 0) {
			reply_error(req, 400, "state can only be \"dead\"");
			goto out;
		}
		q.mode = "dead";
		admin_replay_send(env, req, &q);
		goto out;
	}
	if (!json_is_integer(json_object_get(body, "since_ms")) ||
	    !json_is_integer(json_object_get(body, "until_ms"))) {
		reply_error(req, 400, "give \"state\": \"dead\", or \"since_ms\" and \"until_ms\"");
		goto out;
	}
	q.mode = "range";
	q.since_ms = json_integer_value(json_object_get(body, "since_ms"));
	q.until_ms = json_integer_value(json_object_get(body, "until_ms"));
	if (q.since_ms < 0 || q.until_ms < q.since_ms) {
		reply_error(req, 400, "since_ms must be >= 0 and <= until_ms");
		goto out;
	}
	/* The webhook's own filters decide which events of the range it gets. */
	if (sbuf_addc(&events, ',') == -1 || sbuf_addc(&channels, ',') == -1)
		goto oom;
	for (i = 0; i < EVENT_NTYPES; i++)
		if ((w->events & (1u << i)) &&
		    (sbuf_adds(&events, event_type_str((enum event_type)i)) == -1 ||
			sbuf_addc(&events, ',') == -1))
			goto oom;
	for (i = 0; i < w->nchannels; i++)
		if (sbuf_adds(&channels, w->channels[i]) == -1 || sbuf_addc(&channels, ',') == -1)
			goto oom;
	q.events = events.p;
	q.channels = w->channels == NULL ? "*" : channels.p;
	admin_replay_send(env, req, &q);
	goto out;
oom:
	reply_error(req, 503, "out of memory");
out:
	sbuf_free(&events);
	sbuf_free(&channels);
	json_decref(body);
}

/* --- the on-call's commands (docs/operations.md) ------------------------- */

/* The event JSON of a stream entry, with its stream id; NULL when it has
 * none. */
static json_t *
entry_event(const struct store_entry *e)
{
	json_t *ev = NULL;
	size_t i;

	for (i = 0; i < e->nfields; i++)
		if (strcmp(e->fields[i].name, "event") == 0)
			ev = json_loadb(e->fields[i].value, e->fields[i].value_len, 0, NULL);
	if (ev != NULL && json_is_object(ev))
		json_object_set_new(ev, "stream_id", json_string(e->id));
	return ev;
}

static void
events_find_reply(void *arg, int rc, const struct store_found_event *found, size_t n)
{
	struct areq *a = arg;
	json_t *rows;
	size_t i;

	if (rc == -1 || (rows = json_array()) == NULL) {
		reply_error(a->req, 503, "redis failed");
		free(a);
		return;
	}
	for (i = 0; i < n; i++) {
		const struct store_found_event *f = &found[i];
		json_t *ev;

		ev = f->event_len > 0 ? json_loadb(f->event, f->event_len, 0, NULL) : NULL;
		if (ev == NULL || !json_is_object(ev)) {
			/* Indexed, but trimmed from the stream (maxlen). */
			json_decref(ev);
			ev = json_pack("{s:s,s:b}", "id", f->id, "trimmed", 1);
		} else if (f->stream_id_len > 0) {
			json_object_set_new(ev, "stream_id", json_string(f->stream_id));
		}
		json_array_append_new(rows, ev);
	}
	reply_json(a->req, 200,
	    json_pack("{s:s,s:o}", "out_trade_no", a->out_trade_no, "events", rows));
	free(a);
}

/* GET /v1/events?out_trade_no=X[&channel=C]: every event of one merchant
 * order, registered or not, from the index the record step keeps. */
static void
admin_events_find(struct env *env, struct evhttp_request *req, const char *out, const char *channel)
{
	const struct config *cfg = env->cfg;
	const char **names = NULL;
	struct areq *a = NULL;
	size_t i, n = 0;

	if (*out == '\0' || strlen(out) > ADMIN_MAX_OUT_TRADE_NO) {
		reply_error(req, 400, "out_trade_no must be 1 to 128 bytes");
		return;
	}
	if (channel != NULL && config_channel(cfg, channel) == NULL) {
		reply_error(req, 404, "unknown channel");
		return;
	}
	if ((names = calloc(cfg->nchannels + 1, sizeof(*names))) == NULL ||
	    (a = calloc(1, sizeof(*a))) == NULL) {
		reply_error(req, 503, "out of memory");
		goto out;
	}
	for (i = 0; i < cfg->nchannels; i++)
		if (channel == NULL || strcmp(cfg->channels[i].name, channel) == 0)
			names[n++] = cfg->channels[i].name;
	a->env = env;
	a->req = req;
	snprintf(a->out_trade_no, sizeof(a->out_trade_no), "%s", out);
	if (store_events_find(env->store, names, n, out, 100, events_find_reply, a) == -1) {
		reply_error(req, 503, "redis is not ready");
		goto out;
	}
	a = NULL;
out:
	free(a);
	free(names);
}

/* GET /v1/events?after=ID&wait=S: a long poll on the stream. Redis is read
 * without BLOCK every TAIL_TICK_MS (a blocked connection would hold up every
 * callback behind it) until an event that passes the filters comes or the
 * wait is over. */
#define TAIL_TICK_MS 250
#define TAIL_MAX_WAIT 30

struct tail {
	struct env *env;
	struct evhttp_request *req; /* NULL once the client went away */
	struct conn *conn;
	struct event *timer;
	bool in_redis; /* a read is out: its answer frees the tail */
	char after[48];
	char channel[65];
	char type[32];
	int limit;
	int64_t deadline_ms;
	json_t *rows;
};

static void
tail_free(struct tail *t)
{
	if (t->timer != NULL)
		event_free(t->timer);
	json_decref(t->rows);
	free(t);
}

static void
tail_answer(struct tail *t)
{
	conn_watch(t->conn, NULL, NULL);
	reply_json(t->req, 200, json_pack("{s:O,s:s}", "events", t->rows, "last_id", t->after));
	tail_free(t);
}

static void
tail_gone(void *arg)
{
	struct tail *t = arg;

	t->req = NULL;
	t->conn = NULL;
	if (!t->in_redis)
		tail_free(t);
}

static void tail_read(struct tail *t);

static void
tail_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	tail_read(arg);
}

static bool
tail_wants(const struct tail *t, const struct store_entry *e)
{
	const char *type = NULL, *channel = NULL;
	size_t i;

	for (i = 0; i < e->nfields; i++) {
		const char *k = e->fields[i].name;

		if (strcmp(k, "type") == 0)
			type = e->fields[i].value;
		else if (strcmp(k, "channel") == 0)
			channel = e->fields[i].value;
	}
	return (t->type[0] == '\0' || (type != NULL && strcmp(type, t->type) == 0)) &&
	    (t->channel[0] == '\0' || (channel != NULL && strcmp(channel, t->channel) == 0));
}

static void
tail_reply(void *arg, int rc, const struct store_entry *entries, size_t n)
{
	struct tail *t = arg;
	struct timeval tv = { 0, TAIL_TICK_MS * 1000 };
	int64_t left;
	size_t i;

	t->in_redis = false;
	if (t->req == NULL) {
		tail_free(t);
		return;
	}
	if (rc == -1) {
		conn_watch(t->conn, NULL, NULL);
		reply_error(t->req, 503, "redis failed");
		tail_free(t);
		return;
	}
	for (i = 0; i < n; i++) {
		json_t *ev;

		snprintf(t->after, sizeof(t->after), "%s", entries[i].id);
		if (tail_wants(t, &entries[i]) && (ev = entry_event(&entries[i])) != NULL)
			json_array_append_new(t->rows, ev);
	}
	left = t->deadline_ms - now_ms();
	if (json_array_size(t->rows) > 0 || left <= 0 || t->env->stopping) {
		tail_answer(t);
		return;
	}
	if (left < TAIL_TICK_MS)
		tv.tv_usec = (suseconds_t)left * 1000;
	evtimer_add(t->timer, &tv);
}

static void
tail_read(struct tail *t)
{
	if (store_stream_read(t->env->store, t->after, t->limit, tail_reply, t) == -1) {
		if (t->req != NULL) {
			conn_watch(t->conn, NULL, NULL);
			reply_error(t->req, 503, "redis is not ready");
		}
		tail_free(t);
		return;
	}
	t->in_redis = true;
}

static void
tail_last_reply(void *arg, int rc, const struct store_entry *entries, size_t n)
{
	struct areq *a = arg;
	const char *last = "0-0";

	if (rc == -1) {
		reply_error(a->req, 503, "redis failed");
	} else {
		if (n > 0)
			last = entries[0].id;
		reply_json(a->req, 200, json_pack("{s:[],s:s}", "events", "last_id", last));
	}
	free(a);
}

/* A stream id: digits, or digits-digits. */
static bool
stream_id_valid(const char *s)
{
	size_t i, dash = 0;

	if (*s == '\0' || strlen(s) > 40)
		return false;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] == '-' && i > 0 && dash++ == 0 && s[i + 1] != '\0')
			continue;
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

static void
admin_events_tail(struct env *env, struct evhttp_request *req, struct conn *conn,
    struct evkeyvalq *q)
{
	const char *after = query_param(q, "after"), *wait = query_param(q, "wait");
	const char *channel = query_param(q, "channel"), *type = query_param(q, "type");
	const char *lim = query_param(q, "limit");
	long secs = 0, limit = 100;
	struct tail *t;
	struct areq *a;
	char *end;

	if (wait != NULL &&
	    ((secs = strtol(wait, &end, 10)) < 0 || secs > TAIL_MAX_WAIT || *end != '\0' ||
		end == wait)) {
		reply_error(req, 400, "wait is whole seconds from 0 to 30");
		return;
	}
	if (lim != NULL && ((limit = strtol(lim, &end, 10)) < 1 || limit > 1000 || *end != '\0')) {
		reply_error(req, 400, "limit is from 1 to 1000");
		return;
	}
	if (channel != NULL && config_channel(env->cfg, channel) == NULL) {
		reply_error(req, 404, "unknown channel");
		return;
	}
	if (type != NULL && strcmp(type, "order.paid") != 0 && strcmp(type, "order.status") != 0 &&
	    strcmp(type, "order.amount_mismatch") != 0 && strcmp(type, "order.refunded") != 0) {
		reply_error(req, 400,
		    "type is order.paid, order.status, order.amount_mismatch or order.refunded");
		return;
	}
	if (after == NULL) {
		/* Where the stream ends now: the next call waits from there. */
		if ((a = calloc(1, sizeof(*a))) == NULL) {
			reply_error(req, 503, "out of memory");
			return;
		}
		a->env = env;
		a->req = req;
		if (store_stream_read(env->store, NULL, 1, tail_last_reply, a) == -1) {
			free(a);
			reply_error(req, 503, "redis is not ready");
		}
		return;
	}
	if (!stream_id_valid(after)) {
		reply_error(req, 400, "after is a stream id (1795341600000-0), or 0");
		return;
	}
	if (conn == NULL || (t = calloc(1, sizeof(*t))) == NULL) {
		reply_error(req, 503, "out of memory");
		return;
	}
	t->env = env;
	t->req = req;
	t->conn = conn;
	t->limit = (int)limit;
	t->deadline_ms = now_ms() + secs * 1000;
	snprintf(t->after, sizeof(t->after), "%s", after);
	snprintf(t->channel, sizeof(t->channel), "%s", channel != NULL ? channel : "");
	snprintf(t->type, sizeof(t->type), "%s", type != NULL ? type : "");
	if ((t->rows = json_array()) == NULL ||
	    (t->timer = evtimer_new(env->base, tail_tick, t)) == NULL) {
		tail_free(t);
		reply_error(req, 503, "out of memory");
		return;
	}
	/* The client may leave while we wait (Ctrl-C): its request goes too. */
	conn_watch(conn, tail_gone, t);
	tail_read(t);
}

/* GET /v1/events: find by merchant order, or follow the stream. */
static void
admin_events(struct env *env, struct evhttp_request *req, struct conn *conn)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	const char *out;
	struct evkeyvalq q;

	TAILQ_INIT(&q);
	if (query != NULL && evhttp_parse_query_str(query, &q) == -1) {
		reply_error(req, 400, "bad query string");
		return;
	}
	if ((out = query_param(&q, "out_trade_no")) != NULL)
		admin_events_find(env, req, out, query_param(&q, "channel"));
	else
		admin_events_tail(env, req, conn, &q);
	evhttp_clear_headers(&q);
}

/* GET /v1/events/{id}/deliveries */
static void
admin_event_deliveries(struct env *env, struct evhttp_request *req, const char *id)
{
	struct listing *l;

	if (!id_valid(id, "evt_")) {
		reply_error(req, 400, "an event id is evt_ and 32 hex digits");
		return;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL || (l->rows = json_array()) == NULL) {
		free(l);
		reply_error(req, 503, "out of memory");
		return;
	}
	l->env = env;
	l->req = req;
	l->waiting = 1;
	if (store_event_deliveries(env->store, id, deliveries_reply, l) == -1) {
		json_decref(l->rows);
		free(l);
		reply_error(req, 503, "redis is not ready");
	}
}

static void
delivery_get_reply(void *arg, int rc, const struct store_field *f, size_t nf)
{
	static const char *const numeric[] = { "attempts", "last_status", "created_ms", "due_ms",
		"dead_ms", "delivered_ms", "last_attempt_ms", "lease_until_ms", NULL };
	struct areq *a = arg;
	json_t *o, *h;
	const char *text;

	if (rc == -1) {
		reply_error(a->req, 503, "redis failed");
	} else if (nf == 0 || (o = json_object()) == NULL) {
		reply_error(a->req, 404,
		    "no such delivery (never made, or delivered longer ago "
		    "than delivery_retention)");
	} else {
		pairs_to_json(o, f, nf, numeric);
		/* The body is the event's: `events show` has it. */
		json_object_del(o, "event");
		text = json_string_value(json_object_get(o, "history"));
		h = text != NULL ? json_loads(text, 0, NULL) : NULL;
		json_object_set_new(o, "history", json_is_array(h) ? h : json_array());
		if (!json_is_array(h))
			json_decref(h);
		reply_json(a->req, 200, o);
	}
	free(a);
}

/* GET /v1/deliveries/{id} */
static void
admin_delivery_show(struct env *env, struct evhttp_request *req, const char *id)
{
	struct areq *a;

	if (!id_valid(id, "dlv_")) {
		reply_error(req, 400, "a delivery id is dlv_ and 32 hex digits");
		return;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		reply_error(req, 503, "out of memory");
		return;
	}
	a->env = env;
	a->req = req;
	if (store_delivery_get(env->store, id, delivery_get_reply, a) == -1) {
		free(a);
		reply_error(req, 503, "redis is not ready");
	}
}

/* POST /v1/channels/{ch}/test {"amount", "status"}: a callback signed with
 * the channel's key, for the caller to send to the public listener. Its
 * trade id is random and expected here for TESTCB_TTL_MS: the daemon alone
 * decides that a callback is a test (ingest.c), so neither a gateway nor
 * anyone holding a channel key can mark a real payment as one. */
static void
admin_channel_test(struct env *env, struct evhttp_request *req, const char *rest)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *slash = strchr(rest, '/'), *amount = "0.01", *status = NULL, *why;
	char channel[65], trade_no[TESTCB_ID_LEN + 1], out[TESTCB_ID_LEN + 1];
	char evid[EVENT_ID_LEN + 1], path[80];
	const struct channel *ch;
	struct testcb_spec spec;
	unsigned char rnd[16];
	json_t *body = NULL;
	struct sbuf form;
	struct params p;
	struct event ev;
	int64_t fen;
	enum verdict v;

	sbuf_init(&form);
	params_init(&p);
	if (slash == NULL || strcmp(slash, "/test") != 0 ||
	    (size_t)(slash - rest) >= sizeof(channel)) {
		reply_error(req, 404, "no such endpoint");
		goto out;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_error(req, 405, "method not allowed");
		goto out;
	}
	memcpy(channel, rest, (size_t)(slash - rest));
	channel[slash - rest] = '\0';
	if ((ch = config_channel(env->cfg, channel)) == NULL) {
		reply_error(req, 404, "unknown channel");
		goto out;
	}
	if (len > 0) {
		body = json_loadb((const char *)evbuffer_pullup(in, -1), len,
		    JSON_REJECT_DUPLICATES, NULL);
		if (body == NULL || !json_is_object(body)) {
			reply_error(req, 400, "the body must be a JSON object");
			goto out;
		}
		if (json_object_get(body, "amount") != NULL &&
		    (amount = json_string_value(json_object_get(body, "amount"))) == NULL) {
			reply_error(req, 400, "amount is a decimal string of yuan, like \"0.01\"");
			goto out;
		}
		if (json_object_get(body, "status") != NULL &&
		    ((status = json_string_value(json_object_get(body, "status"))) == NULL ||
			!family_canonical_id(status))) {
			reply_error(req, 400,
			    "status is the gateway's raw status, printable ASCII");
			goto out;
		}
	}
	if (amount_parse(amount, strlen(amount), &fen) == -1 || fen < 1 ||
	    !family_canonical_amount(amount)) {
		reply_error(req, 400, "amount is a decimal string of yuan, like \"0.01\"");
		goto out;
	}
	if (crypto_random(rnd, sizeof(rnd)) == -1) {
		reply_error(req, 503, "no random bytes");
		goto out;
	}
	memcpy(trade_no, TESTCB_PREFIX, sizeof(TESTCB_PREFIX) - 1);
	hex_lower(trade_no + sizeof(TESTCB_PREFIX) - 1, rnd, sizeof(rnd));
	trade_no[TESTCB_ID_LEN] = '\0';
	memcpy(out, trade_no, sizeof(out));
	spec.trade_no = trade_no;
	spec.out_trade_no = out;
	spec.amount = amount;
	spec.status = status;
	spec.now = time(NULL);
	if (testcb_build(ch, &spec, &form, &why) == -1) {
		reply_error(req, strcmp(why, "out of memory") == 0 ? 503 : 409, why);
		goto out;
	}
	/* What the listener will make of it: its event id, and a last check
	 * that the family's verify accepts what its sign made. */
	memset(&ev, 0, sizeof(ev));
	if (form_decode(&p, form.p, form.len) != FORM_OK ||
	    (v = ch->family->verify(ch, &p, time(NULL), &ev)) != VERDICT_OK) {
		reply_error(req, 500, "the test callback does not verify");
		goto out;
	}
	memcpy(evid, ev.id, sizeof(evid));
	if (ingest_test_expect(env->ingest, ch->name, trade_no) == -1) {
		reply_error(req, 503, "too many test callbacks at once: try again in two minutes");
		goto out;
	}
	log_info("test callback made", "channel=%s trade_no=%s event=%s", ch->name, trade_no, evid);
	snprintf(path, sizeof(path), "/notify/%s", ch->name);
	reply_json(req, 201,
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s#,s:i}", "channel", ch->name,
		"family", ch->family->name, "trade_no", trade_no, "out_trade_no", out, "event_id",
		evid, "type", event_type_str(ev.type), "method", "POST", "path", path,
		"content_type", "application/x-www-form-urlencoded", "body", form.p, form.len,
		"expires_in", TESTCB_TTL_MS / 1000));
out:
	json_decref(body);
	params_free(&p);
	sbuf_free(&form);
}

/* --- metrics ------------------------------------------------------------- */

struct scrape {
	struct env *env;
	struct evhttp_request *req;
	struct sbuf text;
	bool counted; /* the due and dead sets were counted */
	long long pending, dead;
};

static void
scrape_send(struct scrape *sc)
{
	struct evbuffer *buf = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(sc->req), "Content-Type",
	    "text/plain; version=0.0.4");
	if (buf != NULL && sc->text.p != NULL)
		evbuffer_add(buf, sc->text.p, sc->text.len);
	evhttp_send_reply(sc->req, 200, "OK", buf);
	if (buf != NULL)
		evbuffer_free(buf);
	sbuf_free(&sc->text);
	free(sc);
}

/* A number of INFO's "name:value" lines, or -1. */
static double
info_value(const char *info, const char *name)
{
	size_t n = strlen(name);
	const char *p;

	for (p = info; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p != NULL ? p + 1 : NULL)
		if (strncmp(p, name, n) == 0 && p[n] == ':')
			return strtod(p + n + 1, NULL);
	return -1;
}

static void
memory_reply(void *arg, const char *info)
{
	struct scrape *sc = arg;
	double used, max;
	int rc = 0;

	if (info != NULL && (used = info_value(info, "used_memory")) >= 0 &&
	    (max = info_value(info, "maxmemory")) >= 0) {
		rc |= metrics_family(&sc->text, "payrelay_redis_used_memory_bytes", "gauge",
		    "Memory Redis uses (INFO used_memory).");
		rc |=
		    metrics_sample(&sc->text, "payrelay_redis_used_memory_bytes", NULL, NULL, used);
		rc |= metrics_family(&sc->text, "payrelay_redis_maxmemory_bytes", "gauge",
		    "Redis's maxmemory (0: no limit). At the limit, with noeviction, every "
		    "callback is answered 503.");
		rc |= metrics_sample(&sc->text, "payrelay_redis_maxmemory_bytes", NULL, NULL, max);
	}
	(void)rc;
	scrape_send(sc);
}

/* The Redis-side memory, when Redis answers; then the answer. */
static void
scrape_memory(struct scrape *sc)
{
	if (store_memory(sc->env->store, memory_reply, sc) == -1)
		scrape_send(sc);
}

static void
sizes_reply(void *arg, int ok, const long long *v, size_t n)
{
	struct scrape *sc = arg;
	int rc = 0;

	if (ok == 0 && n >= 2) {
		/* O(1) sizes only (no SCAN): a scrape stays fast whatever the
		 * key count. docs/redis.md says which kinds are left out. */
		rc |= metrics_family(&sc->text, "payrelay_redis_keys", "gauge",
		    "Keys in payrelay's Redis database (all: DBSIZE, every key; "
		    "delivery_pending, delivery_dead: delivery hashes by state).");
		rc |= metrics_sample(&sc->text, "payrelay_redis_keys", "kind", "all", (double)v[0]);
		if (sc->counted) {
			rc |= metrics_sample(&sc->text, "payrelay_redis_keys", "kind",
			    "delivery_pending", (double)sc->pending);
			rc |= metrics_sample(&sc->text, "payrelay_redis_keys", "kind",
			    "delivery_dead", (double)sc->dead);
		}
		rc |= metrics_family(&sc->text, "payrelay_redis_stream_entries", "gauge",
		    "Entries in the event stream (XLEN; capped by [stream] maxlen).");
		rc |= metrics_sample(&sc->text, "payrelay_redis_stream_entries", NULL, NULL,
		    (double)v[1]);
	}
	(void)rc;
	scrape_memory(sc);
}

/* The key counts, when Redis answers; then the memory. */
static void
scrape_sizes(struct scrape *sc)
{
	if (store_sizes(sc->env->store, NULL, 0, sizes_reply, sc) == -1)
		scrape_memory(sc);
}

static void
counts_reply(void *arg, int ok, const long long *v, size_t n)
{
	struct scrape *sc = arg;
	const struct config *cfg = sc->env->cfg;
	size_t i;
	int rc = 0;

	if (ok == 0 && n == 2 * cfg->nwebhooks) {
		rc |= metrics_family(&sc->text, "payrelay_deliveries_pending", "gauge",
		    "Deliveries waiting (due, retrying or leased), by webhook.");
		for (i = 0; i < cfg->nwebhooks; i++)
			rc |= metrics_sample(&sc->text, "payrelay_deliveries_pending", "webhook",
			    cfg->webhooks[i].name, (double)v[2 * i]);
		rc |= metrics_family(&sc->text, "payrelay_deliveries_dead", "gauge",
		    "Dead deliveries waiting for a replay, by webhook.");
		for (i = 0; i < cfg->nwebhooks; i++)
			rc |= metrics_sample(&sc->text, "payrelay_deliveries_dead", "webhook",
			    cfg->webhooks[i].name, (double)v[2 * i + 1]);
		for (i = 0; i < cfg->nwebhooks; i++) {
			sc->pending += v[2 * i];
			sc->dead += v[2 * i + 1];
		}
		sc->counted = true;
	}
	(void)rc;
	scrape_sizes(sc);
}

static void
admin_metrics(struct env *env, struct evhttp_request *req)
{
	const struct config *cfg = env->cfg;
	struct scrape *sc = calloc(1, sizeof(*sc));
	const char **keys = NULL;
	uint64_t flushes, waits, rcalls, rsteps;
	size_t i;
	int rc = 0;

	if (sc == NULL) {
		reply_error(req, 503, "out of memory");
		return;
	}
	sc->env = env;
	sc->req = req;
	sbuf_init(&sc->text);
	rc |= metrics_family(&sc->text, "payrelay_build_info", "gauge", "The running version.");
	rc |= metrics_sample(&sc->text, "payrelay_build_info", "version", PAYRELAY_VERSION, 1);
	rc |= metrics_render(env->metrics, &sc->text);
	rc |= metrics_family(&sc->text, "payrelay_redis_up", "gauge",
	    "1 when Redis is connected and its scripts are loaded.");
	rc |= metrics_sample(&sc->text, "payrelay_redis_up", NULL, NULL, store_ready(env->store));
	rc |= metrics_family(&sc->text, "payrelay_redis_errors_total", "counter",
	    "Redis requests that failed or timed out.");
	rc |= metrics_sample(&sc->text, "payrelay_redis_errors_total", NULL, NULL,
	    (double)store_errors(env->store));
	store_write_stats(env->store, &flushes, &waits);
	rc |= metrics_family(&sc->text, "payrelay_redis_flushes_total", "counter",
	    "Writes of the commands queued in one loop turn, at its end, all at once.");
	rc |=
	    metrics_sample(&sc->text, "payrelay_redis_flushes_total", NULL, NULL, (double)flushes);
	rc |= metrics_family(&sc->text, "payrelay_redis_write_waits_total", "counter",
	    "Times the Redis socket did not take a turn's commands whole: the rest went "
	    "in a later turn.");
	rc |= metrics_sample(&sc->text, "payrelay_redis_write_waits_total", NULL, NULL,
	    (double)waits);
	store_record_stats(env->store, &rcalls, &rsteps);
	rc |= metrics_family(&sc->text, "payrelay_redis_record_calls_total", "counter",
	    "Script calls of the record step: those of one loop turn go in one call.");
	rc |= metrics_sample(&sc->text, "payrelay_redis_record_calls_total", NULL, NULL,
	    (double)rcalls);
	rc |= metrics_family(&sc->text, "payrelay_redis_record_steps_total", "counter",
	    "Record steps (callbacks, polled and returned payments) those calls carried.");
	rc |= metrics_sample(&sc->text, "payrelay_redis_record_steps_total", NULL, NULL,
	    (double)rsteps);
	rc |= metrics_family(&sc->text, "payrelay_redis_master_known", "gauge",
	    "1 while connected to the Redis master (with sentinels: the one they named, "
	    "and ROLE said master).");
	rc |= metrics_sample(&sc->text, "payrelay_redis_master_known", NULL, NULL,
	    store_master_known(env->store));
	rc |= metrics_family(&sc->text, "payrelay_redis_failovers_total", "counter",
	    "Times the sentinels named a master at another address than before.");
	rc |= metrics_sample(&sc->text, "payrelay_redis_failovers_total", NULL, NULL,
	    (double)store_failovers(env->store));
	rc |= metrics_family(&sc->text, "payrelay_http_connections", "gauge",
	    "Open connections on the public listener.");
	rc |= metrics_sample(&sc->text, "payrelay_http_connections", NULL, NULL,
	    ingest_conns(env->ingest) != NULL ? (double)conns_open(ingest_conns(env->ingest)) : 0);
	rc |= metrics_family(&sc->text, "payrelay_http_connections_max", "gauge",
	    "The cap on open public connections (max_connections, or less to fit the "
	    "open-file limit).");
	rc |= metrics_sample(&sc->text, "payrelay_http_connections_max", NULL, NULL,
	    ingest_conns(env->ingest) != NULL ? (double)conns_cap(ingest_conns(env->ingest)) : 0);
	rc |= metrics_family(&sc->text, "payrelay_admin_http_connections", "gauge",
	    "Open connections on the admin listener.");
	rc |= metrics_sample(&sc->text, "payrelay_admin_http_connections", NULL, NULL,
	    (double)conns_open(env->admin->conns));
	rc |= metrics_family(&sc->text, "payrelay_admin_http_connections_max", "gauge",
	    "The cap on open admin connections.");
	rc |= metrics_sample(&sc->text, "payrelay_admin_http_connections_max", NULL, NULL,
	    (double)conns_cap(env->admin->conns));
	rc |= metrics_family(&sc->text, "payrelay_callbacks_in_flight", "gauge",
	    "Callbacks waiting for Redis.");
	rc |= metrics_sample(&sc->text, "payrelay_callbacks_in_flight", NULL, NULL,
	    (double)ingest_busy(env->ingest));
	rc |= metrics_family(&sc->text, "payrelay_deliveries_in_flight", "gauge",
	    "Delivery attempts and claims not yet settled.");
	rc |= metrics_sample(&sc->text, "payrelay_deliveries_in_flight", NULL, NULL,
	    (double)deliver_busy(env->deliver));
	rc |= metrics_family(&sc->text, "payrelay_webhook_breaker_open", "gauge",
	    "1 while this process's circuit breaker for the webhook is open.");
	for (i = 0; i < cfg->nwebhooks; i++)
		rc |= metrics_sample(&sc->text, "payrelay_webhook_breaker_open", "webhook",
		    cfg->webhooks[i].name,
		    deliver_breaker_open(env->deliver, cfg->webhooks[i].name) ? 1 : 0);
	rc |= metrics_family(&sc->text, "payrelay_webhook_requests_in_flight", "gauge",
	    "Requests to the webhook this process has out now (at most its max_in_flight).");
	for (i = 0; i < cfg->nwebhooks; i++)
		rc |= metrics_sample(&sc->text, "payrelay_webhook_requests_in_flight", "webhook",
		    cfg->webhooks[i].name,
		    (double)deliver_requests(env->deliver, cfg->webhooks[i].name));
	if (rc != 0) {
		sbuf_free(&sc->text);
		free(sc);
		reply_error(req, 503, "out of memory");
		return;
	}
	/* Redis-side counts when Redis answers; the rest either way. */
	if (cfg->nwebhooks > 0 && (keys = calloc(2 * cfg->nwebhooks, sizeof(*keys))) != NULL) {
		struct sbuf names;

		sbuf_init(&names);
		for (i = 0; i < cfg->nwebhooks; i++) {
			char *due = NULL, *dead = NULL;

			if (asprintf(&due, "wh:%s:due", cfg->webhooks[i].name) == -1)
				due = NULL;
			if (asprintf(&dead, "wh:%s:dead", cfg->webhooks[i].name) == -1)
				dead = NULL;
			keys[2 * i] = due;
			keys[2 * i + 1] = dead;
		}
		for (i = 0; i < 2 * cfg->nwebhooks && keys[i] != NULL; i++)
			;
		if (i == 2 * cfg->nwebhooks &&
		    store_counts(env->store, keys, 2 * cfg->nwebhooks, counts_reply, sc) == 0)
			sc = NULL;
		for (i = 0; i < 2 * cfg->nwebhooks; i++)
			free((char *)keys[i]);
		free(keys);
		sbuf_free(&names);
	}
	if (sc != NULL)
		scrape_sizes(sc);
}

static void
admin_cb(struct evhttp_request *req, void *arg)
{
	struct admin *ad = arg;
	struct env *env = ad->env;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	/* Restarts the connection's deadline for its next request. */
	struct conn *conn = conns_request(ad->conns, req);

	if (conns_refuse_framing(ad->conns, req)) {
		reply_error(req, 400, "ambiguous request framing");
		return;
	}
	/* Answers may wait for Redis or a poll: no deadline meanwhile (an
	 * untracked connection's deadline could free the request under us). */
	if (conn == NULL) {
		reply_error(req, 503, "out of memory");
		return;
	}
	conn_hold_until_answered(conn, req);
	if (path == NULL) {
		reply_error(req, 400, "bad request");
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
		return;
	}
	if (!admin_authorized(env, req)) {
		reply_error(req, 401,
		    env->cfg->admin_token == NULL ? "no admin token is configured"
						  : "missing or wrong bearer token");
		return;
	}
	if (strcmp(path, "/readyz") == 0) {
		bool ok = store_ready(env->store);

		reply_json(req, ok ? 200 : 503,
		    json_pack("{s:s,s:b}", "status", ok ? "ready" : "redis not ready", "redis",
			ok));
	} else if (strcmp(path, "/v1/orders") == 0) {
		if (m != EVHTTP_REQ_POST)
			reply_error(req, 405, "method not allowed");
		else
			admin_register(env, req);
	} else if (strncmp(path, "/v1/orders/", 11) == 0) {
		admin_order(env, req, path + 11);
	} else if (strcmp(path, "/v1/payments") == 0) {
		if (m != EVHTTP_REQ_POST)
			reply_error(req, 405, "method not allowed");
		else
			payments_create(env, req);
	} else if (strcmp(path, "/metrics") == 0) {
		admin_metrics(env, req);
	} else if (strcmp(path, "/v1/events") == 0) {
		if (m != EVHTTP_REQ_GET)
			reply_error(req, 405, "method not allowed");
		else
			admin_events(env, req, conn);
	} else if (strncmp(path, "/v1/events/", 11) == 0) {
		size_t n = strlen(path + 11);

		if (m != EVHTTP_REQ_GET)
			reply_error(req, 405, "method not allowed");
		else if (n > 11 && strcmp(path + 11 + n - 11, "/deliveries") == 0 &&
		    n - 11 == EVENT_ID_LEN) {
			char id[EVENT_ID_LEN + 1];

			memcpy(id, path + 11, EVENT_ID_LEN);
			id[EVENT_ID_LEN] = '\0';
			admin_event_deliveries(env, req, id);
		} else
			admin_event(env, req, path + 11);
	} else if (strcmp(path, "/v1/refunds") == 0) {
		refunds_post(env, req);
	} else if (strncmp(path, "/v1/channels/", 13) == 0 && account_serve(env, req, path + 13)) {
		/* answered there: /account, /settlements */
	} else if (strncmp(path, "/v1/channels/", 13) == 0) {
		admin_channel_test(env, req, path + 13);
	} else if (strcmp(path, "/v1/deliveries") == 0) {
		if (m != EVHTTP_REQ_GET)
			reply_error(req, 405, "method not allowed");
		else
			admin_deliveries(env, req);
	} else if (strcmp(path, "/v1/deliveries/purge") == 0) {
		if (m != EVHTTP_REQ_POST)
			reply_error(req, 405, "method not allowed");
		else
			admin_purge(env, req);
	} else if (strncmp(path, "/v1/deliveries/", 15) == 0) {
		if (strchr(path + 15, '/') == NULL) {
			if (m != EVHTTP_REQ_GET)
				reply_error(req, 405, "method not allowed");
			else
				admin_delivery_show(env, req, path + 15);
		} else
			admin_replay_one(env, req, path + 15);
	} else if (strcmp(path, "/v1/replay") == 0) {
		if (m != EVHTTP_REQ_POST)
			reply_error(req, 405, "method not allowed");
		else
			admin_replay_bulk(env, req);
	} else {
		reply_error(req, 404, "no such endpoint");
	}
}

/* Removes what a previous run left at `path`: a socket nobody listens on.
 * Anything else is the operator's (a file, a directory, a live socket of
 * another daemon) and is left alone. Returns 0 or -1 (logged). */
static int
admin_unlink_stale(const char *path, const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, live;

	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return 0;
		log_errorx("cannot listen (admin)", "path=%s error=\"%s\"", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_errorx("cannot listen (admin): the path exists and is not a socket, "
			   "refusing to delete it",
		    "path=%s", path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		log_errorx("cannot listen (admin)", "path=%s error=\"%s\"", path, strerror(errno));
		return -1;
	}
	live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 || errno == EAGAIN;
	close(fd);
	if (live) {
		log_errorx("cannot listen (admin): another process listens on the socket",
		    "path=%s", path);
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		log_errorx("cannot listen (admin)", "path=%s error=\"%s\"", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
admin_bind_unix(struct admin *ad, const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	/* A stale socket from a previous run would make bind fail. */
	if (admin_unlink_stale(path, &sun) == -1)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 || chmod(path, 0660) == -1 ||
	    listen(fd, ADMIN_MAX_CONNECTIONS) == -1) {
		log_errorx("cannot listen (admin)", "path=%s error=\"%s\"", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	if (conns_listen_fd(ad->conns, fd) == -1) {
		log_errorx("cannot listen (admin)", "path=%s error=\"evhttp\"", path);
		return -1;
	}
	return 0;
}

struct admin *
admin_new(struct env *env)
{
	const struct netaddr *a = &env->cfg->admin_listen;
	struct admin *ad;

	if ((ad = calloc(1, sizeof(*ad))) == NULL)
		return NULL;
	ad->env = env;
	if ((ad->http = evhttp_new(env->base)) == NULL)
		goto fail;
	/* The public listener's protections, before any token is looked at:
	 * an unauthenticated peer must not hold memory or descriptors. */
	evhttp_set_max_body_size(ad->http, ADMIN_MAX_BODY);
	evhttp_set_max_headers_size(ad->http, ADMIN_MAX_HEADERS);
	/* conns.c's deadline closes slow and idle connections; libevent's
	 * inactivity timer only backs it up. */
	evhttp_set_timeout(ad->http, env->cfg->read_timeout + 1);
	evhttp_set_allowed_methods(ad->http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
		EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(ad->http, admin_cb, ad);
	if ((ad->conns = conns_new(env->base, ad->http, env->metrics, CONNS_ADMIN,
		 ADMIN_MAX_CONNECTIONS, 0, env->cfg->read_timeout)) == NULL)
		goto fail;
	if (a->is_unix) {
		if (admin_bind_unix(ad, a->path) == -1)
			goto fail;
		log_info("admin listening", "path=%s", a->path);
	} else if (conns_listen(ad->conns, a->host, a->port) == -1) {
		log_errorx("cannot listen (admin)", "addr=%s port=%u", a->host, (unsigned)a->port);
		goto fail;
	} else {
		log_info("admin listening", "addr=%s port=%u", a->host, (unsigned)a->port);
	}
	if (env->cfg->admin_token == NULL)
		log_warnx("no [admin] token: the admin API refuses everything but /healthz", "");
	return ad;
fail:
	admin_free(ad);
	return NULL;
}

void
admin_free(struct admin *ad)
{
	if (ad == NULL)
		return;
	conns_stop_accepting(ad->conns);
	if (ad->http != NULL)
		evhttp_free(ad->http);
	/* After evhttp_free: closing connections still report to it. */
	conns_free(ad->conns);
	free(ad);
}
