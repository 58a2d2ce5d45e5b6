#include "record.h"

#include <stdlib.h>

#include "config.h"
#include "daemon.h"
#include "deliver.h"
#include "event.h"

struct record_ctx {
	struct env *env;
	store_record_cb *cb;
	void *arg;
};

static void
record_done(void *arg, enum store_result r, const char *type)
{
	struct record_ctx ctx = *(struct record_ctx *)arg;

	free(arg);
	if (r == STORE_NEW)
		deliver_kick(ctx.env->deliver);
	ctx.cb(ctx.arg, r, type);
}

int
record_event(struct env *env, const struct channel *ch, const struct event *ev, store_record_cb *cb,
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
	if ((ctx = malloc(sizeof(*ctx))) == NULL)
		goto out;
	ctx->env = env;
	ctx->cb = cb;
	ctx->arg = arg;
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
