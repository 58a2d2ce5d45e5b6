#include "confirm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "config.h"
#include "daemon.h"
#include "family.h"
#include "httpc.h"
#include "log.h"
#include "metrics.h"

/* What this process knows of one channel's confirmations; kept by name,
 * since a reload may free the channel. */
struct cchan {
	char *name;
	int in_flight;
	/* The start times (monotonic ms) of the last `rate` queries, oldest
	 * at `head`: a new one may start when the oldest is 1 s old. A
	 * sliding window, so no second ever sees more than `rate` starts. */
	int64_t *starts;
	int rate;
	int head, n;
	struct cchan *next;
};

struct confirm {
	struct confirmer *cf;
	struct cchan *c;
	char channel[65];
	char *trade_no;
	char *out_trade_no;
	int64_t amount_fen;
	struct httpc_call *call;
	confirm_cb *cb;
	void *arg;
	TAILQ_ENTRY(confirm) entry;
};

struct confirmer {
	struct env *env;
	struct cchan *chans;
	TAILQ_HEAD(, confirm) running;
	bool stopping;
};

const char *
confirm_outcome_str(enum confirm_outcome o)
{
	switch (o) {
	case CONFIRM_CONFIRMED:
		return "confirmed";
	case CONFIRM_REFUSED:
		return "refused";
	case CONFIRM_UNAVAILABLE:
		return "unavailable";
	}
	return "unavailable";
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct cchan *
cchan_get(struct confirmer *cf, const char *name)
{
	struct cchan *c;

	for (c = cf->chans; c != NULL; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->name = strdup(name)) == NULL) {
		free(c);
		return NULL;
	}
	c->next = cf->chans;
	cf->chans = c;
	return c;
}

/* Takes one start out of the channel's window; false when `rate` queries
 * started within the last second (or no memory for the window). */
static bool
cchan_take(struct cchan *c, int rate, int64_t now)
{
	if (c->rate != rate) {
		/* A reload changed the rate: a fresh window. */
		int64_t *s = calloc((size_t)rate, sizeof(*s));

		if (s == NULL)
			return false;
		free(c->starts);
		c->starts = s;
		c->rate = rate;
		c->head = c->n = 0;
	}
	if (c->n == c->rate) {
		if (now - c->starts[c->head] < 1000)
			return false;
		c->head = (c->head + 1) % c->rate;
		c->n--;
	}
	c->starts[(c->head + c->n) % c->rate] = now;
	c->n++;
	return true;
}

static void
count(struct confirmer *cf, const char *channel, enum confirm_outcome o, const char *reason)
{
	metrics_inc(cf->env->metrics, "payrelay_confirmations_total", "channel", channel, "outcome",
	    confirm_outcome_str(o));
	if (reason != NULL)
		metrics_inc(cf->env->metrics, "payrelay_confirm_refusals_total", "channel", channel,
		    "reason", reason);
}

/* Ends `c`: counted, freed, and then its callback called. `reason` is a
 * fixed word for a refusal's label, else NULL. */
static void
confirm_finish(struct confirm *c, enum confirm_outcome o, const char *reason, const char *detail)
{
	struct confirmer *cf = c->cf;
	confirm_cb *cb = c->cb;
	void *arg = c->arg;
	char d[200];

	snprintf(d, sizeof(d), "%s", detail);
	count(cf, c->channel, o, reason);
	TAILQ_REMOVE(&cf->running, c, entry);
	c->c->in_flight--;
	free(c->trade_no);
	free(c->out_trade_no);
	free(c);
	cb(arg, o, d);
}

static void
confirm_http_done(void *arg, const struct httpc_result *r)
{
	struct confirm *c = arg;
	const struct channel *ch = config_channel(c->cf->env->cfg, c->channel);
	struct poll_answer a;
	char detail[200];

	c->call = NULL;
	if (r->curl_code != 0) {
		snprintf(detail, sizeof(detail), "query failed: %.150s",
		    r->error != NULL ? r->error : "error");
		/* curl's text may quote the URL, and an epay URL holds the key */
		config_mask_secrets(c->cf->env->cfg, detail);
		confirm_finish(c, CONFIRM_UNAVAILABLE, NULL, detail);
		return;
	}
	if (r->status < 200 || r->status > 299) {
		snprintf(detail, sizeof(detail), "query answered HTTP %ld", r->status);
		confirm_finish(c, CONFIRM_UNAVAILABLE, NULL, detail);
		return;
	}
	if (ch == NULL || ch->api_base == NULL || ch->family->poll_parse == NULL) {
		confirm_finish(c, CONFIRM_UNAVAILABLE, NULL, "channel changed by a reload");
		return;
	}
	poll_answer_init(&a);
	ch->family->poll_parse(ch, c->out_trade_no, r->body, r->body_len, &a);
	switch (a.state) {
	case POLL_PAID:
		/* poll_parse checked that the answer is about this order. */
		if (a.ev.trade_no == NULL || strcmp(a.ev.trade_no, c->trade_no) != 0)
			confirm_finish(c, CONFIRM_REFUSED, "trade_no",
			    "the gateway says paid, with another trade id");
		else if (a.ev.amount_fen != c->amount_fen) {
			snprintf(detail, sizeof(detail),
			    "the gateway says paid, with another amount: %lld fen",
			    (long long)a.ev.amount_fen);
			confirm_finish(c, CONFIRM_REFUSED, "amount", detail);
		} else
			confirm_finish(c, CONFIRM_CONFIRMED, NULL, "paid");
		break;
	case POLL_UNPAID:
	case POLL_OTHER:
	case POLL_UNKNOWN:
		snprintf(detail, sizeof(detail), "the gateway says %s: %s", poll_state_str(a.state),
		    a.detail);
		confirm_finish(c, CONFIRM_REFUSED, poll_state_str(a.state), detail);
		break;
	case POLL_ERROR:
		snprintf(detail, sizeof(detail), "no usable answer: %s", a.detail);
		confirm_finish(c, CONFIRM_UNAVAILABLE, NULL, detail);
		break;
	}
	poll_answer_free(&a);
}

struct confirm *
confirm_start(struct confirmer *cf, const struct channel *ch, const char *trade_no,
    const char *out_trade_no, int64_t amount_fen, confirm_cb *cb, void *arg, const char **why)
{
	struct poll_query pq = { 0 };
	struct cchan *cc;
	struct confirm *c = NULL;

	*why = "out of memory";
	if (cf->stopping) {
		*why = "stopping";
		goto fail;
	}
	if (ch->api_base == NULL || ch->family->poll_query == NULL ||
	    ch->family->poll_parse == NULL) {
		*why = "the channel cannot be queried";
		goto fail;
	}
	if ((cc = cchan_get(cf, ch->name)) == NULL)
		goto fail;
	if (cc->in_flight >= ch->confirm_max_in_flight) {
		*why = "confirm_max_in_flight queries already running";
		goto fail;
	}
	if (!cchan_take(cc, ch->confirm_rate, mono_ms())) {
		*why = "confirm_rate queries started within the last second";
		goto fail;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->trade_no = strdup(trade_no)) == NULL ||
	    (c->out_trade_no = strdup(out_trade_no)) == NULL)
		goto fail;
	if (ch->family->poll_query(ch, out_trade_no, &pq) == -1) {
		*why = "cannot build the query";
		goto fail;
	}
	c->cf = cf;
	c->c = cc;
	snprintf(c->channel, sizeof(c->channel), "%s", ch->name);
	c->amount_fen = amount_fen;
	c->cb = cb;
	c->arg = arg;
	/* An answer longer than the cap is not downloaded (SPEC §2.5 and the
	 * poller's rule): the transfer stops, the answer is unusable. */
	c->call =
	    httpc_start_gateway(cf->env->httpc, &pq, ch->confirm_timeout_ms, confirm_http_done, c);
	poll_query_free(&pq); /* an epay URL holds the key: freed, never logged */
	if (c->call == NULL) {
		*why = "cannot start the query";
		goto fail;
	}
	cc->in_flight++;
	TAILQ_INSERT_TAIL(&cf->running, c, entry);
	return c;
fail:
	if (c != NULL) {
		free(c->trade_no);
		free(c->out_trade_no);
		free(c);
	}
	count(cf, ch->name, CONFIRM_UNAVAILABLE, NULL);
	return NULL;
}

struct confirmer *
confirm_new(struct env *env)
{
	struct confirmer *cf = calloc(1, sizeof(*cf));

	if (cf == NULL)
		return NULL;
	cf->env = env;
	TAILQ_INIT(&cf->running);
	return cf;
}

void
confirm_stop(struct confirmer *cf)
{
	struct confirm *c;

	if (cf == NULL)
		return;
	cf->stopping = true;
	while ((c = TAILQ_FIRST(&cf->running)) != NULL) {
		httpc_cancel(c->call);
		c->call = NULL;
		confirm_finish(c, CONFIRM_UNAVAILABLE, NULL, "stopping");
	}
}

void
confirm_free(struct confirmer *cf)
{
	struct confirm *c;
	struct cchan *cc, *next;

	if (cf == NULL)
		return;
	while ((c = TAILQ_FIRST(&cf->running)) != NULL) {
		TAILQ_REMOVE(&cf->running, c, entry);
		httpc_cancel(c->call);
		free(c->trade_no);
		free(c->out_trade_no);
		free(c);
	}
	for (cc = cf->chans; cc != NULL; cc = next) {
		next = cc->next;
		free(cc->name);
		free(cc->starts);
		free(cc);
	}
	free(cf);
}
