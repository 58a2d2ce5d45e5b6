/* Orders and polls (docs/reconciliation.md). */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

/* --- orders and polls ------------------------------------------------------ */

/* src/store/lua/order_register.lua: {"created"|"exists"|"conflict", state,
 * amount_fen as registered}. */
static void
order_register_done(struct store_req *r, const redisReply *rep)
{
	store_order_register_cb *cb = r->cb.order_register;
	enum store_order_reg what = STORE_ORDER_FAILED;
	const char *state, *fen;

	if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 3 &&
	    rep->element[0]->type == REDIS_REPLY_STRING) {
		if (strcmp(rep->element[0]->str, "created") == 0)
			what = STORE_ORDER_CREATED;
		else if (strcmp(rep->element[0]->str, "exists") == 0)
			what = STORE_ORDER_EXISTS;
		else if (strcmp(rep->element[0]->str, "conflict") == 0)
			what = STORE_ORDER_CONFLICT;
	}
	if (what == STORE_ORDER_FAILED) {
		cb(r->arg, what, NULL, 0);
		return;
	}
	state = rep->element[1]->str != NULL ? rep->element[1]->str : "";
	fen = rep->element[2]->str != NULL ? rep->element[2]->str : "0";
	cb(r->arg, what, state, (int64_t)strtoll(fen, NULL, 10));
}

/* HGETALL of the order: a reply that is no hash reads as no such order. */
static void
order_get_done(struct store_req *r, const redisReply *rep)
{
	struct store_field *f = NULL;
	size_t n = 0;

	if (rep == NULL || store_fields_decode(rep, 0, &f, &n) == -1) {
		r->cb.fields(r->arg, -1, NULL, 0);
		return;
	}
	r->cb.fields(r->arg, 0, f, n);
	free(f);
}

/* HGET: a string, or nil when the order or its field is absent; anything
 * else (an error, a key of another type) is a failure. */
static void
order_return_to_done(struct store_req *r, const redisReply *rep)
{
	if (rep != NULL && rep->type == REDIS_REPLY_STRING)
		r->cb.return_to(r->arg, 0, rep->str);
	else if (rep != NULL && rep->type == REDIS_REPLY_NIL)
		r->cb.return_to(r->arg, 0, NULL);
	else
		r->cb.return_to(r->arg, -1, NULL);
}

/* src/store/lua/poll_claim.lua: {{out_trade_no, "poll"|"expired", polls}, ...}. */
static void
poll_claim_done(struct store_req *r, const redisReply *rep)
{
	store_poll_claim_cb *cb = r->cb.poll_claim;
	struct store_poll_claimed *items = NULL;
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

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[1]->type != REDIS_REPLY_STRING ||
		    e->element[2]->type != REDIS_REPLY_STRING)
			continue;
		items[n].out_trade_no = e->element[0]->str;
		items[n].expired = strcmp(e->element[1]->str, "expired") == 0;
		items[n].polls = strtol(e->element[2]->str, NULL, 10);
		n++;
	}
	cb(r->arg, 0, items, n);
	free(items);
}

/* src/store/lua/poll_one.lua: {"poll", polls}, {"missing"}, {"settled", state}
 * or {"busy"}. */
static void
poll_one_done(struct store_req *r, const redisReply *rep)
{
	store_poll_one_cb *cb = r->cb.poll_one;
	const char *what;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_STRING) {
		cb(r->arg, STORE_POLL_ONE_FAILED, NULL, 0);
	} else if (strcmp((what = rep->element[0]->str), "missing") == 0) {
		cb(r->arg, STORE_POLL_ONE_MISSING, NULL, 0);
	} else if (strcmp(what, "settled") == 0) {
		cb(r->arg, STORE_POLL_ONE_SETTLED,
		    rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_STRING
			? rep->element[1]->str
			: "",
		    0);
	} else if (strcmp(what, "busy") == 0) {
		cb(r->arg, STORE_POLL_ONE_BUSY, NULL, 0);
	} else {
		cb(r->arg, STORE_POLL_ONE_CLAIMED, NULL,
		    rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_STRING
			? strtol(rep->element[1]->str, NULL, 10)
			: 0);
	}
}

/* src/store/lua/poll_done.lua: the order's state, a string. */
static void
poll_done_done(struct store_req *r, const redisReply *rep)
{
	r->cb.poll_done(r->arg,
	    rep != NULL && rep->type == REDIS_REPLY_STRING ? rep->str : "unknown");
}

/* SET NX PX: +OK when set, nil when another instance holds the key. */
static void
sweep_lock_done(struct store_req *r, const redisReply *rep)
{
	r->cb.sweep_lock(r->arg, rep != NULL && rep->type == REDIS_REPLY_STATUS);
}

int
store_order_register(struct store *s, const char *channel, const char *out_trade_no,
    int64_t amount_fen, int64_t expires_ms, int64_t first_poll_ms, store_order_register_cb *cb,
    void *arg)
{
	struct store_req *r =
	    store_req_new(s, SCRIPT_ORDER_REGISTER, 9, 512, order_register_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.order_register = cb;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	rc |= store_req_cat(r, s->prefix, "ch:", channel, ":orders:due", NULL);
	rc |= store_req_args(r, channel);
	rc |= store_req_args(r, out_trade_no);
	if (amount_fen >= 0)
		rc |= store_req_argll(r, (long long)amount_fen);
	else
		rc |= store_req_args(r, "");
	rc |= store_req_argll(r, (long long)now_ms());
	rc |= store_req_argll(r, (long long)expires_ms);
	if (first_poll_ms > 0)
		rc |= store_req_argll(r, (long long)first_poll_ms);
	else
		rc |= store_req_args(r, "");
	rc |= store_req_args(r, s->dedup_ttl);
	return store_req_send(r, rc);
}

int
store_poll_claim(struct store *s, const char *channel, int max, int rate, const char *owner,
    int64_t lease_until_ms, store_poll_claim_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_POLL_CLAIM, 9, 512, poll_claim_done, arg);
	int64_t now = now_ms();
	int rc;

	if (r == NULL)
		return -1;
	r->cb.poll_claim = cb;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "ch:", channel, ":orders:due", NULL);
	rc |= store_req_cat(r, s->prefix, "ch:", channel, ":polls", NULL);
	rc |= store_req_argll(r, (long long)now);
	rc |= store_req_argll(r, (long long)lease_until_ms);
	rc |= store_req_argll(r, max);
	rc |= store_req_args(r, owner);
	rc |= store_req_cat(r, s->prefix, "order:", channel, ":", NULL);
	rc |= store_req_argll(r, rate);
	rc |= store_req_args(r, s->dedup_ttl);
	return store_req_send(r, rc);
}

int
store_poll_one(struct store *s, const char *channel, const char *out_trade_no, const char *owner,
    int64_t lease_until_ms, store_poll_one_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_POLL_ONE, 6, 512, poll_one_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.poll_one = cb;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	rc |= store_req_cat(r, s->prefix, "ch:", channel, ":orders:due", NULL);
	rc |= store_req_args(r, out_trade_no);
	rc |= store_req_args(r, owner);
	rc |= store_req_argll(r, (long long)lease_until_ms);
	rc |= store_req_argll(r, (long long)now_ms());
	return store_req_send(r, rc);
}

int
store_poll_done(struct store *s, const char *channel, const char *out_trade_no, const char *owner,
    const char *result, int64_t next_poll_ms, const char *detail, store_poll_done_cb *cb, void *arg)
{
	struct store_req *r =
	    store_req_new(s, SCRIPT_POLL_DONE, 9, 512 + strlen(detail), poll_done_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.poll_done = cb;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	rc |= store_req_cat(r, s->prefix, "ch:", channel, ":orders:due", NULL);
	rc |= store_req_args(r, out_trade_no);
	rc |= store_req_args(r, owner);
	rc |= store_req_args(r, result);
	rc |= store_req_argll(r, (long long)now_ms());
	rc |= store_req_argll(r, (long long)next_poll_ms);
	rc |= store_req_args(r, detail);
	rc |= store_req_args(r, s->dedup_ttl);
	return store_req_send(r, rc);
}

int
store_order_get(struct store *s, const char *channel, const char *out_trade_no, store_fields_cb *cb,
    void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_NONE, 2, 256, order_get_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.fields = cb;
	rc = store_req_args(r, "HGETALL");
	rc |= store_req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	return store_req_send(r, rc);
}

int
store_order_return_to(struct store *s, const char *channel, const char *out_trade_no,
    store_return_to_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_NONE, 3, 256, order_return_to_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.return_to = cb;
	rc = store_req_args(r, "HGET");
	rc |= store_req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	rc |= store_req_args(r, "return_to");
	return store_req_send(r, rc);
}

int
store_sweep_lock(struct store *s, const char *channel, const char *owner, int64_t ms,
    store_sweep_lock_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_NONE, 6, 256, sweep_lock_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.sweep_lock = cb;
	rc = store_req_args(r, "SET");
	rc |= store_req_cat(r, s->prefix, "ch:", channel, ":sweep", NULL);
	rc |= store_req_args(r, owner);
	rc |= store_req_args(r, "NX");
	rc |= store_req_args(r, "PX");
	rc |= store_req_argll(r, (long long)ms);
	return store_req_send(r, rc);
}

/* --- creating payments ------------------------------------------------------ */

static const char *
reply_str(const redisReply *rep, size_t i)
{
	if (i < rep->elements && rep->element[i]->type == REDIS_REPLY_STRING)
		return rep->element[i]->str;
	return "";
}

/* src/store/lua/payment_begin.lua and payment_register.lua: {what, state,
 * amount_fen[, pay_kind, pay_target, gateway_trade_no]}. */
static void
payment_done(struct store_req *r, const redisReply *rep)
{
	static const struct {
		const char *word;
		enum store_payment_what what;
	} words[] = { { "go", STORE_PAY_GO }, { "created", STORE_PAY_CREATED },
		{ "done", STORE_PAY_DONE }, { "exists", STORE_PAY_DONE },
		{ "conflict", STORE_PAY_CONFLICT }, { "settled", STORE_PAY_SETTLED },
		{ "busy", STORE_PAY_BUSY } };
	store_payment_cb *cb = r->cb.payment;
	enum store_payment_what what = STORE_PAY_FAILED;
	struct store_payment p = { "", "", "", "", "" };
	size_t i;

	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
	    rep->element[0]->type != REDIS_REPLY_STRING) {
		cb(r->arg, STORE_PAY_FAILED, &p);
		return;
	}
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(rep->element[0]->str, words[i].word) == 0)
			what = words[i].what;
	p.state = reply_str(rep, 1);
	p.amount_fen = reply_str(rep, 2);
	if (what == STORE_PAY_DONE) {
		p.pay_kind = reply_str(rep, 3);
		p.pay_target = reply_str(rep, 4);
		p.gateway_trade_no = reply_str(rep, 5);
		if (*p.pay_kind == '\0')
			what = STORE_PAY_FAILED;
	}
	cb(r->arg, what, &p);
}

int
store_payment_begin(struct store *s, const char *channel, const char *out_trade_no,
    int64_t amount_fen, const char *owner, int64_t lock_ms, store_payment_cb *cb, void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_PAYMENT_BEGIN, 5, 512, payment_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.payment = cb;
	rc = store_req_begin(r, 2);
	rc |= store_req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	rc |= store_req_cat(r, s->prefix, "paylock:", channel, ":", out_trade_no, NULL);
	if (amount_fen >= 0)
		rc |= store_req_argll(r, (long long)amount_fen);
	else
		rc |= store_req_args(r, "");
	rc |= store_req_args(r, owner);
	rc |= store_req_argll(r, (long long)lock_ms);
	return store_req_send(r, rc);
}

int
store_payment_register(struct store *s, const struct store_payment_new *n, store_payment_cb *cb,
    void *arg)
{
	struct store_req *r = store_req_new(s, SCRIPT_PAYMENT_REGISTER, 16,
	    1024 + strlen(n->pay_target) + (n->return_to != NULL ? strlen(n->return_to) : 0),
	    payment_done, arg);
	int rc;

	if (r == NULL)
		return -1;
	r->cb.payment = cb;
	rc = store_req_begin(r, 3);
	rc |= store_req_cat(r, s->prefix, "order:", n->channel, ":", n->out_trade_no, NULL);
	rc |= store_req_cat(r, s->prefix, "ch:", n->channel, ":orders:due", NULL);
	rc |= store_req_cat(r, s->prefix, "paylock:", n->channel, ":", n->out_trade_no, NULL);
	rc |= store_req_args(r, n->channel);
	rc |= store_req_args(r, n->out_trade_no);
	if (n->amount_fen >= 0)
		rc |= store_req_argll(r, (long long)n->amount_fen);
	else
		rc |= store_req_args(r, "");
	rc |= store_req_argll(r, (long long)now_ms());
	rc |= store_req_argll(r, (long long)n->expires_ms);
	if (n->first_poll_ms > 0)
		rc |= store_req_argll(r, (long long)n->first_poll_ms);
	else
		rc |= store_req_args(r, "");
	rc |= store_req_args(r, s->dedup_ttl);
	rc |= store_req_args(r, n->pay_kind);
	rc |= store_req_args(r, n->pay_target);
	rc |= store_req_args(r, n->gateway_trade_no != NULL ? n->gateway_trade_no : "");
	rc |= store_req_args(r, n->return_to != NULL ? n->return_to : "");
	rc |= store_req_args(r, n->pay_mode);
	rc |= store_req_args(r, n->owner);
	return store_req_send(r, rc);
}

/* Nobody waits for the answer. */
static void
payment_unlock_done(struct store_req *r, const redisReply *rep)
{
	(void)r;
	(void)rep;
}

int
store_payment_unlock(struct store *s, const char *channel, const char *out_trade_no,
    const char *owner)
{
	struct store_req *r =
	    store_req_new(s, SCRIPT_PAYMENT_UNLOCK, 3, 512, payment_unlock_done, NULL);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_begin(r, 1);
	rc |= store_req_cat(r, s->prefix, "paylock:", channel, ":", out_trade_no, NULL);
	rc |= store_req_args(r, owner);
	return store_req_send(r, rc);
}
