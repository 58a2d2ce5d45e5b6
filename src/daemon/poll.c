#include "poll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "backoff.h"
#include "config.h"
#include "daemon.h"
#include "family.h"
#include "httpc.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "store.h"

/* What this process knows of one channel's polling; kept by name. */
struct chan {
	char *name;
	int in_flight;
	bool claiming;
	bool sweeping;
	int64_t next_sweep_try_ms;
	struct chan *next;
};

/* One order being polled. */
struct pquery {
	struct poller *p;
	struct chan *c;
	char channel[65];
	char *out_trade_no;
	long polls; /* made before this one */
	struct httpc_call *call;
	poll_now_cb *now_cb;
	void *now_arg;
	char result[16];
	char detail[160];
	struct pquery *prev, *next;
};

/* One page of a sweep (a family with sweep_query: epay). */
struct sweep {
	struct poller *p;
	struct chan *c;
	char channel[65];
	int page;
	int recording;
	bool more;
	struct httpc_call *call;
	struct sweep *next;
};

struct poller {
	struct env *env;
	struct event *tick;
	struct chan *chans;
	struct pquery *queries;
	struct sweep *sweeps;
	size_t busy; /* Redis updates and recordings under way */
	bool stopping;
};

static struct chan *
chan_get(struct poller *p, const char *name)
{
	struct chan *c;

	for (c = p->chans; c != NULL; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->name = strdup(name)) == NULL) {
		free(c);
		return NULL;
	}
	c->next = p->chans;
	p->chans = c;
	return c;
}

static bool
pollable(const struct channel *ch)
{
	return ch != NULL && ch->api_base != NULL && ch->family->poll_query != NULL &&
	    ch->family->poll_parse != NULL;
}

static void
busy_done(struct poller *p)
{
	p->busy--;
}

static void
pquery_free(struct pquery *q)
{
	struct poller *p = q->p;

	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		p->queries = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	q->c->in_flight--;
	free(q->out_trade_no);
	free(q);
}

static void
done_reply(void *arg, const char *state)
{
	struct pquery *q = arg;
	struct poller *p = q->p;

	log_info("order polled",
	    "channel=%s out_trade_no=\"%.64s\" result=%s state=%s poll=%ld detail=\"%s\"",
	    q->channel, q->out_trade_no, q->result, state, q->polls + 1, q->detail);
	metrics_inc(p->env->metrics, "payrelay_polls_total", "channel", q->channel, "result",
	    q->result);
	if (q->now_cb != NULL)
		q->now_cb(q->now_arg, POLL_NOW_DONE, q->result, q->detail);
	pquery_free(q);
	busy_done(p);
}

/* Stores the outcome; the order is polled again after its next gap. */
static void
pquery_finish(struct pquery *q, const char *result)
{
	struct poller *p = q->p;
	const struct channel *ch = config_channel(p->env->cfg, q->channel);
	int64_t gap = 60000, next; /* a reload removed the channel: a minute */

	if (ch != NULL)
		gap = backoff_poll_gap_ms(ch->poll_gaps, ch->npoll_gaps, q->polls + 1,
		    backoff_random());
	next = now_ms() + gap;
	snprintf(q->result, sizeof(q->result), "%s", result);
	p->busy++;
	if (store_poll_done(p->env->store, q->channel, q->out_trade_no, p->env->instance, result,
		next, q->detail, done_reply, q) == -1) {
		/* The lease expires and the order is polled again. */
		log_warnx("order poll outcome not stored",
		    "channel=%s out_trade_no=\"%.64s\" result=%s", q->channel, q->out_trade_no,
		    result);
		if (q->now_cb != NULL)
			q->now_cb(q->now_arg, POLL_NOW_DONE, q->result, q->detail);
		pquery_free(q);
		busy_done(p);
	}
}

static void
pquery_recorded(void *arg, enum store_result r, const char *type)
{
	struct pquery *q = arg;
	struct poller *p = q->p;

	if (r == STORE_NEW || r == STORE_DUP) {
		if (r == STORE_NEW && strcmp(type, "order.amount_mismatch") == 0)
			log_warnx("payment found by polling, with amount mismatch",
			    "channel=%s out_trade_no=\"%.64s\" type=%s", q->channel,
			    q->out_trade_no, type);
		else if (r == STORE_NEW)
			log_info("payment found by polling",
			    "channel=%s out_trade_no=\"%.64s\" type=%s", q->channel,
			    q->out_trade_no, type);
		snprintf(q->detail, sizeof(q->detail), "%s",
		    r == STORE_NEW ? "recorded" : "already recorded");
		pquery_finish(q, "paid");
	} else {
		snprintf(q->detail, sizeof(q->detail), "paid, but not recorded: redis %s",
		    r == STORE_TIMEOUT ? "timeout" : "error");
		pquery_finish(q, "error");
	}
	/* Last: the outcome above is counted before this recording stops being. */
	busy_done(p);
}

/* Copies curl's message (it may quote what was sent: the URL of an epay
 * query holds the key) into out[n], every secret masked before the cut. */
static void
masked_error(const struct config *cfg, const char *error, char *out, size_t n)
{
	char *m = xstrdup(error != NULL ? error : "failed");

	if (m == NULL) {
		snprintf(out, n, "failed");
		return;
	}
	config_mask_secrets(cfg, m);
	snprintf(out, n, "%.150s", m);
	explicit_bzero(m, strlen(m));
	free(m);
}

static void
pquery_http_done(void *arg, const struct httpc_result *r)
{
	struct pquery *q = arg;
	struct poller *p = q->p;
	const struct channel *ch = config_channel(p->env->cfg, q->channel);
	struct poll_answer a;

	q->call = NULL;
	if (r->curl_code != 0) {
		masked_error(p->env->cfg, r->error, q->detail, sizeof(q->detail));
		pquery_finish(q, "error");
		return;
	}
	if (r->status < 200 || r->status > 299) {
		snprintf(q->detail, sizeof(q->detail), "HTTP %ld", r->status);
		pquery_finish(q, "error");
		return;
	}
	if (ch == NULL || !pollable(ch)) {
		snprintf(q->detail, sizeof(q->detail), "channel removed by a reload");
		pquery_finish(q, "error");
		return;
	}
	poll_answer_init(&a);
	ch->family->poll_parse(ch, q->out_trade_no, r->body, r->body_len, &a);
	snprintf(q->detail, sizeof(q->detail), "%s", a.detail);
	if (a.state == POLL_PAID) {
		poll_answer_mask(&a);
		a.ev.source = SOURCE_POLL;
		a.ev.received_ms = now_ms();
		p->busy++;
		if (record_event(p->env, ch, &a.ev, pquery_recorded, q) == -1) {
			p->busy--;
			snprintf(q->detail, sizeof(q->detail),
			    "paid, but not recorded: redis not ready");
			pquery_finish(q, "error");
		}
	} else {
		pquery_finish(q, poll_state_str(a.state));
	}
	poll_answer_free(&a);
}

static void
pquery_start(struct poller *p, struct chan *c, const struct channel *ch, const char *out_trade_no,
    long polls, poll_now_cb *now_cb, void *now_arg)
{
	struct pquery *q = calloc(1, sizeof(*q));
	struct poll_query pq = { 0 };

	if (q == NULL || (q->out_trade_no = strdup(out_trade_no)) == NULL) {
		free(q);
		if (now_cb != NULL)
			now_cb(now_arg, POLL_NOW_FAILED, "error", "out of memory");
		return; /* the lease expires */
	}
	q->p = p;
	q->c = c;
	snprintf(q->channel, sizeof(q->channel), "%s", ch->name);
	q->polls = polls;
	q->now_cb = now_cb;
	q->now_arg = now_arg;
	q->next = p->queries;
	if (p->queries != NULL)
		p->queries->prev = q;
	p->queries = q;
	c->in_flight++;
	if (ch->family->poll_query(ch, out_trade_no, &pq) == -1) {
		snprintf(q->detail, sizeof(q->detail), "cannot build the query");
		pquery_finish(q, "error");
		return;
	}
	/* An answer is a small JSON object: a larger one is not downloaded. */
	q->call = httpc_start_gateway(p->env->httpc, &pq, ch->poll_timeout_ms, pquery_http_done, q);
	poll_query_free(&pq); /* the URL holds the key: freed, never logged */
	if (q->call == NULL) {
		snprintf(q->detail, sizeof(q->detail), "cannot start the query");
		pquery_finish(q, "error");
	}
}

struct claim {
	struct poller *p;
	struct chan *c;
};

static void
claim_reply(void *arg, int rc, const struct store_poll_claimed *items, size_t n)
{
	struct claim cl = *(struct claim *)arg;
	struct poller *p = cl.p;
	const struct channel *ch = config_channel(p->env->cfg, cl.c->name);
	size_t i;

	free(arg);
	cl.c->claiming = false;
	busy_done(p);
	if (rc == -1)
		return;
	for (i = 0; i < n; i++) {
		if (items[i].expired) {
			log_info("order expired unpaid",
			    "channel=%s out_trade_no=\"%.64s\" polls=%ld", cl.c->name,
			    items[i].out_trade_no, items[i].polls);
			continue;
		}
		/* Claimed as we stopped or the channel went away: its lease expires. */
		if (p->stopping || !pollable(ch))
			continue;
		pquery_start(p, cl.c, ch, items[i].out_trade_no, items[i].polls, NULL, NULL);
	}
}

/* --- sweeps ------------------------------------------------------------- */

static void sweep_page(struct sweep *sw);

static void
sweep_end(struct sweep *sw)
{
	struct poller *p = sw->p;
	struct sweep **pp;

	if (sw->call != NULL || sw->recording > 0)
		return;
	if (sw->more && !p->stopping && sw->page < SWEEP_MAX_PAGES) {
		sw->page++;
		sweep_page(sw);
		return;
	}
	for (pp = &p->sweeps; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == sw) {
			*pp = sw->next;
			break;
		}
	}
	log_info("sweep done", "channel=%s pages=%d", sw->channel, sw->page);
	sw->c->sweeping = false;
	free(sw);
	busy_done(p);
}

static void
sweep_recorded(void *arg, enum store_result r, const char *type)
{
	struct sweep *sw = arg;

	sw->recording--;
	busy_done(sw->p);
	if (r == STORE_NEW && strcmp(type, "order.amount_mismatch") == 0)
		log_warnx("payment found by sweeping, with amount mismatch", "channel=%s type=%s",
		    sw->channel, type);
	else if (r == STORE_NEW)
		log_info("payment found by sweeping", "channel=%s type=%s", sw->channel, type);
	else if (r != STORE_DUP)
		log_warnx("sweep found a payment but could not record it", "channel=%s",
		    sw->channel);
	sweep_end(sw);
}

static void
sweep_http_done(void *arg, const struct httpc_result *r)
{
	struct sweep *sw = arg;
	struct poller *p = sw->p;
	const struct channel *ch = config_channel(p->env->cfg, sw->channel);
	struct poll_answer *answers;
	int i, n, max;

	sw->call = NULL;
	sw->more = false;
	if (r->curl_code != 0 || r->status < 200 || r->status > 299 || ch == NULL) {
		char error[160];

		masked_error(p->env->cfg, r->error != NULL ? r->error : "", error, sizeof(error));
		log_warnx("sweep page failed", "channel=%s page=%d status=%ld error=\"%.120s\"",
		    sw->channel, sw->page, r->status, error);
		sweep_end(sw);
		return;
	}
	/* A reload may have given the channel a family that has no sweep. */
	if (!family_sweeps(ch->family)) {
		sweep_end(sw);
		return;
	}
	max = ch->family->sweep_page;
	if ((answers = calloc((size_t)max, sizeof(*answers))) == NULL) {
		sweep_end(sw);
		return;
	}
	for (i = 0; i < max; i++)
		poll_answer_init(&answers[i]);
	n = ch->family->sweep_parse(ch, r->body, r->body_len, answers, max, &sw->more);
	if (n < 0)
		log_warnx("sweep page refused", "channel=%s page=%d detail=\"%s\"", sw->channel,
		    sw->page, answers[0].detail);
	for (i = 0; i < n; i++) {
		if (answers[i].state != POLL_PAID)
			continue;
		poll_answer_mask(&answers[i]);
		answers[i].ev.source = SOURCE_POLL;
		answers[i].ev.received_ms = now_ms();
		p->busy++;
		sw->recording++;
		if (record_event(p->env, ch, &answers[i].ev, sweep_recorded, sw) == -1) {
			sw->recording--;
			p->busy--;
		}
	}
	for (i = 0; i < max; i++)
		poll_answer_free(&answers[i]);
	free(answers);
	sweep_end(sw);
}

static void
sweep_page(struct sweep *sw)
{
	struct poller *p = sw->p;
	const struct channel *ch = config_channel(p->env->cfg, sw->channel);
	struct poll_query pq = { 0 };

	if (ch == NULL || !family_sweeps(ch->family) ||
	    ch->family->sweep_query(ch, sw->page, &pq) == -1) {
		sw->more = false;
		sweep_end(sw);
		return;
	}
	sw->call =
	    httpc_start_gateway(p->env->httpc, &pq, ch->poll_timeout_ms, sweep_http_done, sw);
	poll_query_free(&pq);
	if (sw->call == NULL) {
		sw->more = false;
		sweep_end(sw);
	}
}

struct sweep_try {
	struct poller *p;
	struct chan *c;
};

static void
sweep_lock_reply(void *arg, bool locked)
{
	struct sweep_try t = *(struct sweep_try *)arg;
	struct poller *p = t.p;
	struct sweep *sw;

	free(arg);
	if (!locked || p->stopping || (sw = calloc(1, sizeof(*sw))) == NULL) {
		/* Another instance sweeps this interval (or Redis failed). */
		t.c->sweeping = false;
		busy_done(p);
		return;
	}
	sw->p = p;
	sw->c = t.c;
	snprintf(sw->channel, sizeof(sw->channel), "%s", t.c->name);
	sw->page = 1;
	sw->next = p->sweeps;
	p->sweeps = sw;
	log_info("sweep started", "channel=%s", sw->channel);
	metrics_inc(p->env->metrics, "payrelay_sweeps_total", "channel", sw->channel, NULL, NULL);
	sweep_page(sw); /* busy stays counted until sweep_end */
}

static void
sweep_try(struct poller *p, struct chan *c, const struct channel *ch, int64_t now)
{
	struct sweep_try *t;

	if (c->sweeping || now < c->next_sweep_try_ms || (t = malloc(sizeof(*t))) == NULL)
		return;
	/* The lock is the interval: whoever sets it sweeps, for everyone. */
	c->next_sweep_try_ms = now + 1000;
	t->p = p;
	t->c = c;
	if (store_sweep_lock(p->env->store, ch->name, p->env->instance,
		(int64_t)ch->sweep_interval * 1000, sweep_lock_reply, t) == -1) {
		free(t);
		return;
	}
	c->sweeping = true;
	p->busy++;
}

/* --- the loop ----------------------------------------------------------- */

static void
poll_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;
	const struct config *cfg = p->env->cfg;
	int64_t now = now_ms();
	size_t i;

	if (p->stopping || !store_ready(p->env->store))
		return;
	for (i = 0; i < cfg->nchannels; i++) {
		const struct channel *ch = &cfg->channels[i];
		struct chan *c;
		struct claim *cl;
		int room;

		if (!pollable(ch) || (c = chan_get(p, ch->name)) == NULL)
			continue;
		if (ch->sweep)
			sweep_try(p, c, ch, now);
		room = POLL_MAX_IN_FLIGHT - c->in_flight;
		if (room > ch->poll_rate)
			room = ch->poll_rate;
		if (c->claiming || room <= 0 || (cl = malloc(sizeof(*cl))) == NULL)
			continue;
		cl->p = p;
		cl->c = c;
		if (store_poll_claim(p->env->store, ch->name, room, ch->poll_rate, p->env->instance,
			now + ch->poll_timeout_ms + POLL_LEASE_MARGIN_MS, claim_reply, cl) == -1) {
			free(cl);
			continue;
		}
		c->claiming = true;
		p->busy++;
	}
}

struct now_ctx {
	struct poller *p;
	struct chan *c;
	char channel[65];
	char *out_trade_no;
	poll_now_cb *cb;
	void *arg;
};

static void
now_claim_reply(void *arg, enum store_poll_one r, const char *state, long polls)
{
	struct now_ctx *n = arg;
	struct poller *p = n->p;
	const struct channel *ch = config_channel(p->env->cfg, n->channel);

	busy_done(p);
	if (r == STORE_POLL_ONE_FAILED)
		n->cb(n->arg, POLL_NOW_FAILED, "error", "redis failed");
	else if (r == STORE_POLL_ONE_MISSING)
		n->cb(n->arg, POLL_NOW_MISSING, "", "no such order");
	else if (r == STORE_POLL_ONE_SETTLED)
		n->cb(n->arg, POLL_NOW_SETTLED, state, "not pending");
	else if (r == STORE_POLL_ONE_BUSY)
		n->cb(n->arg, POLL_NOW_BUSY, "", "being polled");
	else if (!pollable(ch) || p->stopping)
		n->cb(n->arg, POLL_NOW_FAILED, "error", "channel cannot be polled");
	else
		pquery_start(p, n->c, ch, n->out_trade_no, polls, n->cb, n->arg);
	free(n->out_trade_no);
	free(n);
}

int
poll_now(struct poller *p, const char *channel, const char *out_trade_no, poll_now_cb *cb,
    void *arg)
{
	const struct channel *ch = config_channel(p->env->cfg, channel);
	struct now_ctx *n;

	if (!pollable(ch) || p->stopping || (n = calloc(1, sizeof(*n))) == NULL)
		return -1;
	n->p = p;
	n->cb = cb;
	n->arg = arg;
	snprintf(n->channel, sizeof(n->channel), "%s", channel);
	if ((n->c = chan_get(p, channel)) == NULL ||
	    (n->out_trade_no = strdup(out_trade_no)) == NULL ||
	    store_poll_one(p->env->store, channel, out_trade_no, p->env->instance,
		now_ms() + ch->poll_timeout_ms + POLL_LEASE_MARGIN_MS, now_claim_reply, n) == -1) {
		free(n->out_trade_no);
		free(n);
		return -1;
	}
	p->busy++;
	return 0;
}

struct poller *
poll_new(struct env *env)
{
	struct poller *p = calloc(1, sizeof(*p));
	struct timeval tv = { 0, POLL_TICK_MS * 1000 };

	if (p == NULL)
		return NULL;
	p->env = env;
	if ((p->tick = event_new(env->base, -1, EV_PERSIST, poll_tick_cb, p)) == NULL ||
	    event_add(p->tick, &tv) == -1) {
		poll_free(p);
		return NULL;
	}
	return p;
}

void
poll_stop(struct poller *p)
{
	struct pquery *q, *next;
	struct sweep *sw;

	if (p == NULL)
		return;
	p->stopping = true;
	event_del(p->tick);
	/* Queries in flight are dropped: their leases expire and the orders
	 * are polled again, here or by another instance. */
	for (q = p->queries; q != NULL; q = next) {
		next = q->next;
		if (q->call != NULL) {
			httpc_cancel(q->call);
			q->call = NULL;
			if (q->now_cb != NULL)
				q->now_cb(q->now_arg, POLL_NOW_FAILED, "error", "stopping");
			pquery_free(q);
		}
	}
	for (sw = p->sweeps; sw != NULL; sw = sw->next) {
		if (sw->call != NULL) {
			httpc_cancel(sw->call);
			sw->call = NULL;
			sw->more = false;
		}
	}
	/* Sweeps with nothing left to record end now; the others end when
	 * their last recording is answered. */
	for (sw = p->sweeps; sw != NULL;) {
		struct sweep *after = sw->next;

		if (sw->call == NULL && sw->recording == 0)
			sweep_end(sw);
		sw = after;
	}
}

size_t
poll_busy(const struct poller *p)
{
	return p == NULL ? 0 : p->busy;
}

void
poll_free(struct poller *p)
{
	struct chan *c, *cn;

	if (p == NULL)
		return;
	while (p->queries != NULL)
		pquery_free(p->queries);
	while (p->sweeps != NULL) {
		struct sweep *sw = p->sweeps;

		p->sweeps = sw->next;
		free(sw);
	}
	for (c = p->chans; c != NULL; c = cn) {
		cn = c->next;
		free(c->name);
		free(c);
	}
	if (p->tick != NULL)
		event_free(p->tick);
	free(p);
}
