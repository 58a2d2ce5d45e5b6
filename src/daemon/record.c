#include "record.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "deliver.h"
#include "event.h"
#include "log.h"
#include "metrics.h"

/* A place among a webhook's max_in_flight reserved for a delivery claimed
 * at record (deliver_reserve). */
struct record_res {
	struct hook *hook; /* NULL: none */
	int64_t lease_until_ms;
};

/* What the repeat-payment warning needs once the event is gone: `strs`
 * holds the channel, the trade id and the order id, each NUL-terminated. */
struct record_ctx {
	struct env *env;
	record_cb *cb;
	void *arg;
	char event_id[EVENT_ID_LEN + 1];
	enum event_source source;
	long long amount_fen, paid_amount_fen;
	const char *channel, *trade_no, *out_trade_no; /* into strs */
	/* Claim at record: each hook's reservation (by index in the record's
	 * hooks), and the event JSON the first attempts send unless the step
	 * rewrote it; both NULL when nothing was reserved. */
	struct record_res *res;
	size_t nres;
	char *json;
	char strs[];
};

/* Ends every reservation of res: the deliveries claimed at record go out
 * now, the others are given up on (see deliver_reserved). */
static void
record_claimed(struct env *env, struct record_res *res, size_t nres, const char *event_id,
    const char *json, const struct store_recorded *rd)
{
	struct store_claimed it;
	size_t i;

	memset(&it, 0, sizeof(it));
	it.event_id = event_id;
	it.body = rd != NULL && rd->body != NULL ? rd->body : json;
	it.body_len = rd != NULL && rd->body != NULL ? rd->body_len : strlen(json);
	for (i = 0; rd != NULL && i < rd->nclaims; i++) {
		struct record_res *x;

		if (rd->claims[i].hook >= nres || (x = &res[rd->claims[i].hook])->hook == NULL)
			continue; /* not asked for: the script claims no other */
		it.id = rd->claims[i].id;
		deliver_reserved(env->deliver, x->hook, x->lease_until_ms, &it);
		x->hook = NULL;
	}
	for (i = 0; i < nres; i++)
		if (res[i].hook != NULL)
			deliver_reserved(env->deliver, res[i].hook, res[i].lease_until_ms, NULL);
}

static void
record_done(void *arg, enum store_result r, const char *type, const char *first_trade_no,
    const struct store_recorded *rd)
{
	struct record_ctx *ctx = arg;

	if (ctx->res != NULL)
		record_claimed(ctx->env, ctx->res, ctx->nres, ctx->event_id, ctx->json, rd);
	/* Deliveries made due (not claimed at record) are claimed now. */
	if (r == STORE_NEW && (rd == NULL || rd->made > rd->nclaims))
		deliver_kick(ctx->env->deliver);
	/* The money moved twice: one of the two payments must be refunded. */
	if (r == STORE_NEW && first_trade_no != NULL) {
		metrics_inc(ctx->env->metrics, "payrelay_repeat_payments_total", "channel",
		    ctx->channel, NULL, NULL);
		log_warnx("repeat payment recorded",
		    "channel=%s event=%s type=%s source=%s trade_no=\"%.64s\" "
		    "out_trade_no=\"%.64s\" first_trade_no=\"%.64s\" amount_fen=%lld "
		    "paid_amount_fen=%lld",
		    ctx->channel, ctx->event_id, type, event_source_str(ctx->source), ctx->trade_no,
		    ctx->out_trade_no, first_trade_no, ctx->amount_fen, ctx->paid_amount_fen);
	}
	if (r == STORE_NEW && type != NULL && strcmp(type, "order.amount_mismatch") == 0)
		metrics_inc(ctx->env->metrics, "payrelay_amount_mismatches_total", "channel",
		    ctx->channel, NULL, NULL);
	ctx->cb(ctx->arg, r, type);
	free(ctx->res);
	free(ctx->json);
	free(ctx);
}

/* A context with copies of what record_done may log. */
static struct record_ctx *
record_ctx_new(struct env *env, const struct event *ev, record_cb *cb, void *arg)
{
	size_t lc = strlen(ev->channel) + 1, lt = strlen(ev->trade_no) + 1;
	size_t lo = strlen(ev->out_trade_no) + 1;
	struct record_ctx *ctx;

	if ((ctx = malloc(sizeof(*ctx) + lc + lt + lo)) == NULL)
		return NULL;
	ctx->env = env;
	ctx->cb = cb;
	ctx->arg = arg;
	memcpy(ctx->event_id, ev->id, sizeof(ctx->event_id));
	ctx->source = ev->source;
	ctx->amount_fen = (long long)ev->amount_fen;
	ctx->paid_amount_fen = (long long)ev->paid_amount_fen;
	ctx->channel = memcpy(ctx->strs, ev->channel, lc);
	ctx->trade_no = memcpy(ctx->strs + lc, ev->trade_no, lt);
	ctx->out_trade_no = memcpy(ctx->strs + lc + lt, ev->out_trade_no, lo);
	ctx->res = NULL;
	ctx->nres = 0;
	ctx->json = NULL;
	return ctx;
}

int
record_event(struct env *env, const struct channel *ch, const struct event *ev, record_cb *cb,
    void *arg)
{
	const struct config *cfg = env->cfg;
	struct record_hook *hooks = NULL;
	struct record_res *res = NULL;
	struct record_ctx *ctx = NULL;
	struct record rec;
	char *json = NULL;
	size_t i, nhooks = 0, nres = 0;
	int rc = -1;

	if ((json = event_to_json(ev)) == NULL)
		goto out;
	if ((ctx = record_ctx_new(env, ev, cb, arg)) == NULL)
		goto out;
	if (cfg->nwebhooks > 0 &&
	    ((hooks = calloc(cfg->nwebhooks, sizeof(*hooks))) == NULL ||
		(res = calloc(cfg->nwebhooks, sizeof(*res))) == NULL))
		goto out;
	for (i = 0; i < cfg->nwebhooks; i++) {
		const struct webhook *w = &cfg->webhooks[i];
		bool as_is = webhook_matches(w, ev->type, ch->name);
		bool mm =
		    ev->type == EVENT_PAID && webhook_matches(w, EVENT_AMOUNT_MISMATCH, ch->name);

		if (!as_is && !mm)
			continue;
		hooks[nhooks].name = w->name;
		hooks[nhooks].match_paid = as_is;
		hooks[nhooks].match_mismatch = mm;
		hooks[nhooks].first_delay_ms = (int64_t)w->schedule[0] * 1000;
		/* Due now, and room for it: made claimed, sent from the record
		 * step's answer without a claim call. */
		if (hooks[nhooks].first_delay_ms == 0 &&
		    (res[nhooks].hook = deliver_reserve(env->deliver, w,
			 &res[nhooks].lease_until_ms)) != NULL) {
			hooks[nhooks].lease_until_ms = res[nhooks].lease_until_ms;
			nres++;
		}
		nhooks++;
	}
	rec.ev = ev;
	rec.json = json;
	rec.hooks = hooks;
	rec.nhooks = nhooks;
	rec.owner = nres > 0 ? env->instance : NULL;
	if (store_record(env->store, &rec, record_done, ctx) == -1)
		goto out;
	if (nres > 0) {
		ctx->res = res;
		ctx->nres = nhooks;
		ctx->json = json;
		res = NULL;
		json = NULL;
	}
	ctx = NULL;
	rc = 0;
out:
	if (res != NULL && nres > 0)
		record_claimed(env, res, nhooks, ev->id, json, NULL);
	free(ctx);
	free(res);
	free(hooks);
	free(json);
	return rc;
}
