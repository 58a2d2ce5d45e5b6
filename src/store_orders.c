/* Orders and polls (docs/reconciliation.md). */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

/* --- orders and polls ------------------------------------------------------ */

int
store_order_register(struct store *s, const char *channel, const char *out_trade_no,
    int64_t amount_fen, int64_t expires_ms, int64_t first_poll_ms, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_ORDER_REGISTER, 9, 512, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
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
    int64_t lease_until_ms, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_POLL_CLAIM, 9, 512, cb, arg);
	int64_t now = now_ms();
	int rc;

	if (r == NULL)
		return -1;
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
    int64_t lease_until_ms, store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_POLL_ONE, 6, 512, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
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
    const char *result, int64_t next_poll_ms, const char *detail, store_reply_cb *cb, void *arg)
{
	struct store_req *r =
	    store_reply_req(s, SCRIPT_POLL_DONE, 9, 512 + strlen(detail), cb, arg);
	int rc;

	if (r == NULL)
		return -1;
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
store_order_get(struct store *s, const char *channel, const char *out_trade_no, store_reply_cb *cb,
    void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_NONE, 2, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_args(r, "HGETALL");
	rc |= store_req_cat(r, s->prefix, "order:", channel, ":", out_trade_no, NULL);
	return store_req_send(r, rc);
}

int
store_sweep_lock(struct store *s, const char *channel, const char *owner, int64_t ms,
    store_reply_cb *cb, void *arg)
{
	struct store_req *r = store_reply_req(s, SCRIPT_NONE, 6, 256, cb, arg);
	int rc;

	if (r == NULL)
		return -1;
	rc = store_req_args(r, "SET");
	rc |= store_req_cat(r, s->prefix, "ch:", channel, ":sweep", NULL);
	rc |= store_req_args(r, owner);
	rc |= store_req_args(r, "NX");
	rc |= store_req_args(r, "PX");
	rc |= store_req_argll(r, (long long)ms);
	return store_req_send(r, rc);
}
