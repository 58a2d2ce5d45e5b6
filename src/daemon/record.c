#include "record.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "deliver.h"
#include "event.h"
#include "log.h"
#include "metrics.h"

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
	char strs[];
};

static void
record_done(void *arg, enum store_result r, const char *type, const char *first_trade_no)
{
	struct record_ctx *ctx = arg;

	if (r == STORE_NEW)
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
	return ctx;
}

int
record_event(struct env *env, const struct channel *ch, const struct event *ev, record_cb *cb,
    void *arg)
{
	const struct config *cfg = env->cfg;
	struct record_hook *hooks = NULL;
	struct record_ctx *ctx = NULL;
	struct record rec;
	char *json = NULL;
	size_t i, nhooks = 0;
	int rc = -1;

	if ((json = event_to_json(ev)) == NULL)
		goto out;
	if (cfg->nwebhooks > 0 && (hooks = calloc(cfg->nwebhooks, sizeof(*hooks))) == NULL)
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
		nhooks++;
	}
	if ((ctx = record_ctx_new(env, ev, cb, arg)) == NULL)
		goto out;
	rec.ev = ev;
	rec.json = json;
	rec.hooks = hooks;
	rec.nhooks = nhooks;
	if (store_record(env->store, &rec, record_done, ctx) == -1)
		goto out;
	ctx = NULL;
	rc = 0;
out:
	free(ctx);
	free(hooks);
	free(json);
	return rc;
}
