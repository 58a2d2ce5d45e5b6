/* Refunds (SPEC §10.3, docs/payments.md): the claim that makes a refund
 * idempotent and bounded by what was paid, and its outcome. The
 * order.refunded event itself goes through the record step like any other. */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

/* src/store/lua/refund_begin.lua: {what, state, out_trade_no, trade_no,
 * amount_fen, paid_fen, refunded_fen, created_ms, answer}. */
static void
refund_begin_done(struct store_req *r, const redisReply *rep)
{
	static const struct {
		const char *word;
		enum store_refund_begin what;
	} words[] = {
		{ "exists", STORE_REFUND_EXISTS },
		{ "no_order", STORE_REFUND_NO_ORDER },
		{ "unpaid", STORE_REFUND_UNPAID },
		{ "trimmed", STORE_REFUND_TRIMMED },
		{ "over", STORE_REFUND_OVER },
		{ "claimed", STORE_REFUND_CLAIMED },
	};
	store_refund_begin_cb *cb = r->cb.refund_begin;
	enum store_refund_begin what = STORE_REFUND_FAILED;
	struct store_refund_info info;
	size_t i;

	memset(&info, 0, sizeof(info));
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 9) {
		cb(r->arg, STORE_REFUND_FAILED, &info);
		return;
	}
	for (i = 0; i < 9; i++) {
		if (rep->element[i]->type != REDIS_REPLY_STRING) {
			cb(r->arg, STORE_REFUND_FAILED, &info);
			return;
		}
	}
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(rep->element[0]->str, words[i].word) == 0)
			what = words[i].what;
	info.state = rep->element[1]->str;
	info.out_trade_no = rep->element[2]->str;
	info.trade_no = rep->element[3]->str;
	info.amount_fen = strtoll(rep->element[4]->str, NULL, 10);
	info.paid_fen = strtoll(rep->element[5]->str, NULL, 10);
	info.refunded_fen = strtoll(rep->element[6]->str, NULL, 10);
	info.created_ms = strtoll(rep->element[7]->str, NULL, 10);
	info.answer = rep->element[8]->str;
	info.answer_len = rep->element[8]->len;
	cb(r->arg, what, &info);
}

int
store_refund_begin(struct store *s, const struct store_refund_req *q, store_refund_begin_cb *cb,
    void *arg)
{
	struct store_req *r =
	    store_req_new(s, SCRIPT_REFUND_BEGIN, 12, 1024, refund_begin_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.refund_begin = cb;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "refund:", q->channel, ":", q->refund_id, NULL);
	rc |= store_req_args(r, s->stream_key);
	rc |= store_req_args(r, s->prefix);
	rc |= store_req_args(r, q->channel);
	rc |= store_req_args(r, q->refund_id);
	rc |= store_req_args(r, q->out_trade_no != NULL ? q->out_trade_no : "");
	rc |= store_req_args(r, q->trade_no != NULL ? q->trade_no : "");
	rc |= store_req_args(r, q->paid_event_id != NULL ? q->paid_event_id : "");
	rc |= store_req_argll(r, (long long)q->amount_fen);
	rc |= store_req_argll(r, (long long)now_ms());
	rc |= store_req_args(r, s->dedup_ttl);
	return store_req_send(r, rc);
}

static void
refund_finish_done(struct store_req *r, const redisReply *rep)
{
	store_done_cb *cb = r->cb.done;

	if (cb == NULL)
		return;
	if (rep == NULL)
		cb(r->arg, -1, NULL);
	else if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
		cb(r->arg, 0, rep->str);
	else
		cb(r->arg, -1, NULL);
}

int
store_refund_finish(struct store *s, const struct store_refund_outcome *o, store_done_cb *cb,
    void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_REFUND_FINISH, 10,
	    512 + (o->answer != NULL ? strlen(o->answer) : 0), refund_finish_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.done = cb;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "refund:", o->channel, ":", o->refund_id, NULL);
	rc |= store_req_cat(r, s->prefix, "rft:", o->channel, ":", o->trade_no, NULL);
	rc |= store_req_args(r, o->outcome);
	rc |= store_req_args(r, o->answer != NULL ? o->answer : "");
	rc |= store_req_args(r, o->event_id != NULL ? o->event_id : "");
	rc |= store_req_argll(r, (long long)now_ms());
	rc |= store_req_args(r, o->refund_id);
	rc |= store_req_args(r, s->dedup_ttl);
	return store_req_send(r, rc);
}
