#include "refunds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

#include "amount.h"
#include "config.h"
#include "daemon.h"
#include "event.h"
#include "family.h"
#include "httpc.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "reply.h"
#include "store.h"

#define REFUND_MAX_OUT_TRADE_NO 128
/* A pending claim older than the gateway's time limit plus this was left
 * by a process that stopped (or crashed) while it asked: its outcome is
 * not known. */
#define REFUND_STALE_MARGIN_MS 30000

/* One POST /v1/refunds, from the claim to the answer. */
struct refund {
	struct env *env;
	struct evhttp_request *req;
	char channel[65];
	char refund_id[REFUND_MAX_ID + 1];
	char *out_trade_no; /* as asked, or NULL */
	char *trade_no;     /* as asked, or NULL */
	int64_t amount_fen;
	char amount[32];
	int timeout_ms;
	/* The payment, once claimed. */
	char *pay_trade_no, *pay_out_trade_no;
	int64_t paid_fen, refunded_fen;
	struct httpc_call *call;
	struct family_answer ans;
	char event_id[EVENT_ID_LEN + 1];
	/* What the caller gets, and a repeat after it. */
	int status;
	json_t *answer;
	bool counted; /* in env->refunding */
};

/* payrelay_refunds_total: `channel` is a configured channel's name (never
 * the caller's unchecked text, which would make a series of anything). */
static void
refund_count(struct env *env, const char *channel, const char *result)
{
	metrics_inc(env->metrics, "payrelay_refunds_total", "channel", channel, "result", result);
}

static void
refund_free(struct refund *r)
{
	if (r == NULL)
		return;
	if (r->counted)
		r->env->refunding--;
	free(r->out_trade_no);
	free(r->trade_no);
	free(r->pay_trade_no);
	free(r->pay_out_trade_no);
	family_answer_free(&r->ans);
	json_decref(r->answer);
	free(r);
}

/* Answers with r->status and r->answer, and frees r. */
static void
refund_answer(struct refund *r)
{
	reply_json(r->req, r->status, json_incref(r->answer));
	refund_free(r);
}

static void
finish_done(void *arg, int rc, const char *answer)
{
	struct refund *r = arg;

	/* The gateway has answered: what it said is the caller's answer even
	 * when its keeping failed (a repeat then finds the claim pending). */
	if (rc == -1 || answer == NULL || strcmp(answer, "ok") != 0)
		log_errorx("refund outcome not stored",
		    "channel=%s refund_id=\"%s\" status=%d answer=%s", r->channel, r->refund_id,
		    r->status, answer != NULL ? answer : "(redis failed)");
	refund_answer(r);
}

/* Stores the outcome ("done", "unknown" or "refused"), then answers. */
static void
refund_finish(struct refund *r, const char *outcome)
{
	struct store_refund_outcome o;
	char *text = json_dumps(r->answer, JSON_COMPACT);

	memset(&o, 0, sizeof(o));
	o.channel = r->channel;
	o.refund_id = r->refund_id;
	o.trade_no = r->pay_trade_no;
	o.outcome = outcome;
	o.answer = text != NULL ? text : "";
	o.event_id = r->event_id[0] != '\0' ? r->event_id : NULL;
	if (store_refund_finish(r->env->store, &o, finish_done, r) == -1)
		finish_done(r, -1, NULL);
	free(text);
}

/* The gateway's answer gave no outcome: it may have refunded. The amount
 * stays counted against the payment and the refund_id stays used. */
static void
refund_unknown(struct refund *r, const char *detail)
{
	char d[200];

	snprintf(d, sizeof(d), "%s", detail);
	config_mask_secrets(r->env->cfg, d);
	refund_count(r->env, r->channel, "unknown");
	log_warnx("refund outcome unknown: check the gateway before another refund_id",
	    "channel=%s refund_id=\"%s\" trade_no=\"%.64s\" amount_fen=%lld detail=\"%s\"",
	    r->channel, r->refund_id, r->pay_trade_no, (long long)r->amount_fen, d);
	r->status = 502;
	r->answer = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I}", "error",
	    "no usable answer from the gateway: the refund may or may not have been made", "detail",
	    d, "state", "unknown", "channel", r->channel, "refund_id", r->refund_id, "amount",
	    r->amount, "amount_fen", (json_int_t)r->amount_fen);
	refund_finish(r, "unknown");
}

/* The answer of a refund the gateway made. */
static json_t *
refund_done_json(const struct refund *r, bool recorded)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:s,s:b}", "state",
	    "done", "channel", r->channel, "refund_id", r->refund_id, "out_trade_no",
	    r->pay_out_trade_no, "trade_no", r->pay_trade_no, "amount", r->amount, "amount_fen",
	    (json_int_t)r->amount_fen, "paid_amount_fen", (json_int_t)r->paid_fen, "refunded_fen",
	    (json_int_t)(r->refunded_fen + r->amount_fen), "refundable_fen",
	    (json_int_t)(r->paid_fen - r->refunded_fen - r->amount_fen), "event_id", r->event_id,
	    "gateway_msg", r->ans.msg, "event_recorded", recorded);

	return o;
}

static void
refund_recorded(void *arg, enum store_result res, const char *type)
{
	struct refund *r = arg;
	bool recorded = res == STORE_NEW || res == STORE_DUP;

	(void)type;
	if (!recorded)
		log_errorx("refund made, but its event was not recorded",
		    "channel=%s refund_id=\"%s\" event=%s", r->channel, r->refund_id, r->event_id);
	refund_count(r->env, r->channel, "done");
	r->status = 201;
	r->answer = refund_done_json(r, recorded);
	refund_finish(r, "done");
}

/* The gateway refunded: the order.refunded event, recorded like any. */
static void
refund_record(struct refund *r, const struct channel *ch)
{
	char amt[32];
	struct event ev;

	amount_format(r->paid_fen, amt, sizeof(amt));
	memset(&ev, 0, sizeof(ev));
	ev.type = EVENT_REFUNDED;
	ev.source = SOURCE_ADMIN;
	ev.channel = ch->name;
	ev.family = ch->family->name;
	ev.merchant_id = ch->merchant_id;
	ev.trade_no = r->pay_trade_no;
	ev.out_trade_no = r->pay_out_trade_no;
	ev.status = "refunded";
	ev.amount = amt;
	ev.amount_fen = r->paid_fen;
	ev.paid_amount = amt;
	ev.paid_amount_fen = r->paid_fen;
	ev.received_ms = now_ms();
	ev.raw = &r->ans.raw; /* the gateway's answer, the key left out */
	ev.refund_id = r->refund_id;
	ev.refund_amount_fen = r->amount_fen;
	log_info("refund made", "channel=%s refund_id=\"%s\" trade_no=\"%.64s\" amount_fen=%lld",
	    r->channel, r->refund_id, r->pay_trade_no, (long long)r->amount_fen);
	if (event_make_refund_id(ev.id, ch->name, r->pay_trade_no, r->refund_id) == -1) {
		refund_recorded(r, STORE_ERROR, NULL);
		return;
	}
	memcpy(r->event_id, ev.id, sizeof(r->event_id));
	/* -1: cb is not called, and the refund is answered (and r freed) here */
	if (record_event(r->env, ch, &ev, refund_recorded, r) == -1)
		refund_recorded(r, STORE_ERROR, NULL);
}

static void
refund_http_done(void *arg, const struct httpc_result *res)
{
	struct refund *r = arg;
	const struct channel *ch = config_channel(r->env->cfg, r->channel);
	char d[200];

	r->call = NULL;
	if (res->curl_code != 0) {
		snprintf(d, sizeof(d), "refund request failed: %.150s",
		    res->error != NULL ? res->error : "error");
		refund_unknown(r, d);
		return;
	}
	if (res->status < 200 || res->status > 299) {
		snprintf(d, sizeof(d), "refund answered HTTP %ld", res->status);
		refund_unknown(r, d);
		return;
	}
	if (ch == NULL || ch->family->refund_parse == NULL) {
		refund_unknown(r, "the channel changed by a reload while the gateway was asked");
		return;
	}
	ch->family->refund_parse(ch, res->body, res->body_len, &r->ans);
	switch (r->ans.outcome) {
	case FAMILY_ANSWER_OK:
		refund_record(r, ch);
		break;
	case FAMILY_ANSWER_REFUSED:
		/* Nothing was refunded: the claim goes, the refund_id may be
		 * tried again (after topping up the balance, say). */
		log_warnx("refund refused by the gateway",
		    "channel=%s refund_id=\"%s\" trade_no=\"%.64s\" amount_fen=%lld code=\"%s\" "
		    "msg=\"%s\"",
		    r->channel, r->refund_id, r->pay_trade_no, (long long)r->amount_fen,
		    r->ans.code, r->ans.msg);
		refund_count(r->env, r->channel, "refused");
		r->status = 502;
		r->answer = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "error",
		    "the gateway refused the refund", "gateway_code", r->ans.code, "gateway_msg",
		    r->ans.msg, "state", "refused", "channel", r->channel, "refund_id",
		    r->refund_id);
		refund_finish(r, "refused");
		break;
	case FAMILY_ANSWER_GARBAGE:
		refund_unknown(r, r->ans.detail);
		break;
	}
}

/* Claimed: ask the gateway. */
static void
refund_ask(struct refund *r)
{
	const struct channel *ch = config_channel(r->env->cfg, r->channel);
	struct family_refund fr;
	struct poll_query pq = { 0 };

	if (ch == NULL || ch->family->refund_query == NULL) {
		refund_unknown(r, "the channel changed by a reload");
		return;
	}
	fr.trade_no = r->pay_trade_no;
	fr.out_trade_no = r->pay_out_trade_no;
	fr.money = r->amount;
	if (ch->family->refund_query(ch, &fr, &pq) == -1) {
		/* Nothing was sent: nothing can have been refunded. */
		refund_count(r->env, r->channel, "failed");
		r->status = 503;
		r->answer = json_pack("{s:s}", "error", "out of memory");
		refund_finish(r, "refused");
		return;
	}
	r->call = httpc_start_gateway(r->env->httpc, &pq, ch->poll_timeout_ms, refund_http_done, r);
	poll_query_free(&pq); /* it holds the key: freed, never logged */
	if (r->call == NULL) {
		refund_count(r->env, r->channel, "failed");
		r->status = 503;
		r->answer = json_pack("{s:s}", "error", "cannot start the gateway request");
		refund_finish(r, "refused");
	}
}

/* A refund_id used before: the first answer again when it is the same
 * refund, else 409. */
static void
refund_repeat(struct refund *r, const struct store_refund_info *in)
{
	bool same = in->amount_fen == r->amount_fen &&
	    (r->out_trade_no == NULL || strcmp(r->out_trade_no, in->out_trade_no) == 0) &&
	    (r->trade_no == NULL || strcmp(r->trade_no, in->trade_no) == 0);
	json_t *stored;

	if (!same) {
		reply_json(r->req, 409,
		    json_pack("{s:s,s:s,s:s,s:s,s:I}", "error",
			"refund_id was used for another refund (another order or amount)",
			"refund_id", r->refund_id, "out_trade_no", in->out_trade_no, "trade_no",
			in->trade_no, "amount_fen", (json_int_t)in->amount_fen));
		refund_free(r);
		return;
	}
	if (strcmp(in->state, "pending") == 0) {
		bool stale = now_ms() - in->created_ms > r->timeout_ms + REFUND_STALE_MARGIN_MS;

		reply_json(r->req, 409,
		    json_pack("{s:s,s:s,s:s}", "error",
			stale ? "an earlier attempt with this refund_id stopped while the "
				"gateway was asked: its outcome is unknown"
			      : "this refund is being made: ask again in a moment",
			"state", stale ? "unknown" : "pending", "refund_id", r->refund_id));
		refund_free(r);
		return;
	}
	stored = json_loadb(in->answer, in->answer_len, 0, NULL);
	if (!json_is_object(stored)) {
		json_decref(stored);
		reply_error(r->req, 500, "the stored answer of this refund is unreadable");
		refund_free(r);
		return;
	}
	/* The first answer, whatever came since: a done refund is 200 now
	 * (201 was the first time), one of unknown outcome stays 502. */
	reply_json(r->req, strcmp(in->state, "done") == 0 ? 200 : 502, stored);
	refund_free(r);
}

static void
refund_claimed(void *arg, enum store_refund_begin what, const struct store_refund_info *in)
{
	struct refund *r = arg;

	switch (what) {
	case STORE_REFUND_FAILED:
		refund_count(r->env, r->channel, "failed");
		reply_error(r->req, 503, "redis failed");
		break;
	case STORE_REFUND_EXISTS:
		refund_count(r->env, r->channel, "repeat");
		refund_repeat(r, in);
		return;
	case STORE_REFUND_NO_ORDER:
		refund_count(r->env, r->channel, "rejected");
		reply_error(r->req, 404, "no such order: no payment of it is recorded");
		break;
	case STORE_REFUND_UNPAID:
		refund_count(r->env, r->channel, "rejected");
		reply_json(r->req, 409,
		    json_pack("{s:s,s:s}", "error", "the order has no recorded payment", "state",
			in->state));
		break;
	case STORE_REFUND_TRIMMED:
		refund_count(r->env, r->channel, "rejected");
		reply_error(r->req, 409,
		    "the payment's event is no longer in the stream: payrelay cannot tell "
		    "what was paid");
		break;
	case STORE_REFUND_OVER:
		refund_count(r->env, r->channel, "over_refund");
		reply_json(r->req, 409,
		    json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "error",
			"the amount is more than is left to refund of this payment", "out_trade_no",
			in->out_trade_no, "trade_no", in->trade_no, "amount_fen",
			(json_int_t)r->amount_fen, "paid_amount_fen", (json_int_t)in->paid_fen,
			"refunded_fen", (json_int_t)in->refunded_fen, "refundable_fen",
			(json_int_t)(in->paid_fen - in->refunded_fen)));
		break;
	case STORE_REFUND_CLAIMED:
		r->counted = true;
		r->env->refunding++;
		if ((r->pay_trade_no = strdup(in->trade_no)) == NULL ||
		    (r->pay_out_trade_no = strdup(in->out_trade_no)) == NULL) {
			/* The claim stays: its outcome is unknown to a repeat. */
			refund_count(r->env, r->channel, "failed");
			reply_error(r->req, 503, "out of memory");
			break;
		}
		r->paid_fen = in->paid_fen;
		r->refunded_fen = in->refunded_fen;
		refund_ask(r);
		return;
	}
	refund_free(r);
}

/* An id of a payment or refund: what a gateway takes back safely. */
static bool
id_ok(const char *s, size_t max)
{
	return s != NULL && strlen(s) <= max && family_canonical_id(s) && strchr(s, '/') == NULL;
}

void
refunds_post(struct env *env, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *channel, *out, *tno, *amount, *rid;
	const struct channel *ch;
	char paid_id[EVENT_ID_LEN + 1];
	struct store_refund_req q;
	struct refund *r = NULL;
	json_t *body = NULL;
	int64_t fen;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		reply_error(req, 405, "method not allowed");
		return;
	}
	body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, NULL);
	if (body == NULL || !json_is_object(body)) {
		reply_error(req, 400, "the body must be a JSON object");
		goto out;
	}
	channel = json_string_value(json_object_get(body, "channel"));
	out = json_string_value(json_object_get(body, "out_trade_no"));
	tno = json_string_value(json_object_get(body, "trade_no"));
	amount = json_string_value(json_object_get(body, "amount"));
	rid = json_string_value(json_object_get(body, "refund_id"));
	if (channel == NULL || amount == NULL || rid == NULL || (out == NULL) == (tno == NULL)) {
		reply_error(req, 400,
		    "channel, out_trade_no or trade_no (one of them), amount (a decimal string) "
		    "and refund_id are required");
		goto out;
	}
	if ((ch = config_channel(env->cfg, channel)) == NULL) {
		reply_error(req, 404, "unknown channel");
		goto out;
	}
	if ((out != NULL && !id_ok(out, REFUND_MAX_OUT_TRADE_NO)) ||
	    (tno != NULL && !id_ok(tno, REFUND_MAX_OUT_TRADE_NO))) {
		refund_count(env, ch->name, "rejected");
		reply_error(req, 400,
		    "out_trade_no and trade_no are 1 to 128 printable ASCII characters, without "
		    "white space, '&', '=', '%' or '/'");
		goto out;
	}
	if (!id_ok(rid, REFUND_MAX_ID)) {
		refund_count(env, ch->name, "rejected");
		reply_error(req, 400,
		    "refund_id is 1 to 64 printable ASCII characters, without white space, '&', "
		    "'=', '%' or '/'");
		goto out;
	}
	if (amount_parse(amount, strlen(amount), &fen) == -1 || fen < 1) {
		refund_count(env, ch->name, "rejected");
		reply_error(req, 400,
		    "amount must be a decimal string of yuan above 0, like \"1.00\"");
		goto out;
	}
	if (ch->family->refund_query == NULL || ch->family->refund_parse == NULL) {
		char msg[160];

		snprintf(msg, sizeof(msg),
		    "the %s gateway has no refund API: refund in its "
		    "merchant panel",
		    ch->family->name);
		refund_count(env, ch->name, "not_supported");
		reply_error(req, 501, msg);
		goto out;
	}
	if (ch->api_base == NULL) {
		refund_count(env, ch->name, "rejected");
		reply_error(req, 409,
		    "the channel has no api_base: payrelay cannot reach its gateway");
		goto out;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (out != NULL && (r->out_trade_no = strdup(out)) == NULL) ||
	    (tno != NULL && (r->trade_no = strdup(tno)) == NULL))
		goto oom;
	r->env = env;
	r->req = req;
	snprintf(r->channel, sizeof(r->channel), "%s", ch->name);
	snprintf(r->refund_id, sizeof(r->refund_id), "%s", rid);
	r->amount_fen = fen;
	amount_format(fen, r->amount, sizeof(r->amount));
	r->timeout_ms = ch->poll_timeout_ms;
	family_answer_init(&r->ans);
	memset(&q, 0, sizeof(q));
	q.channel = r->channel;
	q.refund_id = r->refund_id;
	q.out_trade_no = r->out_trade_no;
	q.trade_no = r->trade_no;
	q.amount_fen = fen;
	if (tno != NULL) {
		/* By gateway trade id: its payment's event, found by id. */
		if (event_make_id(paid_id, r->channel, tno, "paid") == -1)
			goto oom;
		q.paid_event_id = paid_id;
	}
	if (store_refund_begin(env->store, &q, refund_claimed, r) == -1) {
		refund_count(env, ch->name, "failed");
		reply_error(req, 503, "redis is not ready");
		refund_free(r);
	}
	goto out;
oom:
	refund_free(r);
	refund_count(env, ch->name, "failed");
	reply_error(req, 503, "out of memory");
out:
	json_decref(body);
}
