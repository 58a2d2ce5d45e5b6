#include "deliver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>

#include "backoff.h"
#include "breaker.h"
#include "config.h"
#include "daemon.h"
#include "httpc.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "webhook.h"

/* What this process knows of one webhook; kept by name across reloads. */
struct hook {
	char *name;
	int in_flight;
	int reserved; /* by record steps not yet answered (claim at record) */
	/* Due deliveries may wait in Redis (a record made one due, a claim
	 * filled its batch): freed capacity claims again. Else the tick finds
	 * what becomes due (retries, other instances' records). */
	bool backlog;
	bool claiming;
	struct breaker breaker;
	struct hook *next;
};

struct attempt {
	struct deliver *d;
	struct hook *hook;
	char id[64];
	char event_id[64];
	long attempts; /* made before this one */
	bool probe;
	/* Holds one of the webhook's max_in_flight places (and, a probe, the
	 * breaker's one probe): from its start until the receiver answered
	 * (or the request failed), not until Redis has the outcome. */
	bool sending;
	int64_t started_ms;
	/* what the outcome needs of the webhook, copied: a reload may free it */
	unsigned schedule[WEBHOOK_MAX_SCHEDULE];
	size_t nschedule;
	struct httpc_call *call;
	LIST_ENTRY(attempt) link;
	/* its outcome, queued for this loop turn's finish call */
	struct store_outcome out;
	char error[160];
	struct attempt *fin_next;
};

/* The attempts whose outcomes went to Redis in one finish call. */
struct finish {
	size_t n;
	struct attempt *a[];
};

struct claim {
	struct deliver *d;
	struct hook *hook;
	int max;
	bool probe;
};

struct deliver {
	struct env *env;
	struct event *tick;
	struct event *kick;
	struct event *flush; /* sends the outcomes queued in this loop turn */
	struct attempt *fin; /* queued outcomes, oldest first */
	struct attempt **fin_tail;
	size_t nfin;
	struct hook *hooks;
	LIST_HEAD(, attempt) attempts; /* sent, or waiting for Redis to take the outcome */
	size_t nattempts;
	size_t nclaims;
	size_t nreserved; /* every hook's `reserved` */
	size_t nreleases; /* claimed while stopping, being given back */
	bool stopping;
};

static void deliver_claim_all(struct deliver *d);
static void deliver_claim_soon(struct deliver *d);

static struct hook *
hook_get(struct deliver *d, const char *name)
{
	struct hook *h;

	for (h = d->hooks; h != NULL; h = h->next)
		if (strcmp(h->name, name) == 0)
			return h;
	if ((h = calloc(1, sizeof(*h))) == NULL || (h->name = strdup(name)) == NULL) {
		free(h);
		return NULL;
	}
	h->backlog = true;
	h->next = d->hooks;
	d->hooks = h;
	return h;
}

static const struct webhook *
webhook_find(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nwebhooks; i++)
		if (strcmp(cfg->webhooks[i].name, name) == 0)
			return &cfg->webhooks[i];
	return NULL;
}

/* The request is over: its place is free for the next, while its outcome
 * goes to Redis (max_in_flight bounds the requests a receiver sees at
 * once, not the outcomes on their way to Redis). */
static void
attempt_sent(struct attempt *a)
{
	if (!a->sending)
		return;
	a->sending = false;
	a->hook->in_flight--;
	if (a->probe)
		breaker_probe_end(&a->hook->breaker);
}

static void
attempt_unlink_free(struct attempt *a)
{
	struct deliver *d = a->d;

	LIST_REMOVE(a, link);
	d->nattempts--;
	attempt_sent(a);
	free(a);
}

/* The attempt is settled (or given up on). Its place was freed when the
 * receiver answered (attempt_http_done, which looked for more then); only
 * an attempt that ends without an answer (released, not started) frees its
 * place here, and only then is there new room to claim into. */
static void
attempt_done(struct attempt *a)
{
	struct deliver *d = a->d;
	bool backlog = a->hook->backlog && a->sending;

	attempt_unlink_free(a);
	/* Stopping: payrelayd.c's drain timer sees deliver_busy() fall. */
	if (backlog)
		deliver_claim_soon(d);
}

static void
finish_cb(void *arg, int rc, const char *const *answers, size_t n)
{
	struct finish *f = arg;
	size_t i;

	for (i = 0; i < f->n; i++) {
		struct attempt *a = f->a[i];
		const char *answer = rc == 0 && i < n ? answers[i] : NULL;

		if (answer == NULL)
			log_warnx("delivery outcome not recorded, the lease will expire",
			    "webhook=%s delivery=%s", a->hook->name, a->id);
		else if (strcmp(answer, "settled") == 0 || strcmp(answer, "lost") == 0)
			/* Another instance took the lease (ours had expired) and
			 * settled the delivery, or holds it: its outcome stands. */
			log_info("delivery outcome dropped", "webhook=%s delivery=%s reason=\"%s\"",
			    a->hook->name, a->id,
			    strcmp(answer, "settled") == 0 ? "already settled"
							   : "lease taken over");
		attempt_done(a);
	}
	free(f);
}

/* Sends the outcomes queued in this loop turn in one call: one script run
 * and one reply for a burst of answers from the receivers. */
static void
deliver_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct deliver *d = arg;
	struct store_outcome *o;
	struct finish *f;
	struct attempt *first = d->fin, *a, *next;
	size_t i, n = d->nfin;

	if (n == 0)
		return;
	f = malloc(sizeof(*f) + n * sizeof(f->a[0]));
	o = calloc(n, sizeof(*o));
	d->fin = NULL;
	d->fin_tail = &d->fin;
	d->nfin = 0;
	if (f != NULL && o != NULL) {
		f->n = n;
		for (i = 0, a = first; a != NULL; a = a->fin_next, i++) {
			f->a[i] = a;
			o[i] = a->out;
		}
		if (store_finish(d->env->store, o, n, finish_cb, f) == 0) {
			free(o);
			return;
		}
	}
	free(o);
	free(f);
	for (a = first; a != NULL; a = next) {
		next = a->fin_next;
		log_warnx("delivery outcome not recorded, the lease will expire",
		    "webhook=%s delivery=%s reason=\"redis not ready\"", a->hook->name, a->id);
		attempt_done(a);
	}
}

/* The breaker's transitions (src/core/breaker.c), logged; `w` is NULL when
 * a reload removed the webhook. */
static void
hook_success(struct hook *h)
{
	if (breaker_success(&h->breaker))
		log_info("webhook breaker closed", "webhook=%s", h->name);
}

static void
hook_failure(struct hook *h, const struct webhook *w, int64_t now)
{
	struct breaker *b = &h->breaker;

	if (breaker_failure(b, now, w != NULL ? w->breaker_after : 0))
		log_warnx("webhook breaker open", "webhook=%s failures=%d failing_for_s=%lld",
		    h->name, b->failures, (long long)((now - b->failing_since_ms) / 1000));
}

static void
hook_probe_failed(struct hook *h, const struct webhook *w, int64_t now)
{
	breaker_probe_failed(&h->breaker, now, w != NULL ? w->probe_interval_max : 300);
}

/* Queues the attempt's outcome for this loop turn's finish call. */
static void
outcome_queue(struct attempt *a, const struct store_outcome *o, const char *error)
{
	struct deliver *d = a->d;

	a->out = *o;
	snprintf(a->error, sizeof(a->error), "%s", error);
	a->out.error = a->error;
	a->fin_next = NULL;
	*d->fin_tail = a;
	d->fin_tail = &a->fin_next;
	/* Runs later in this same loop turn, after the other answers that
	 * arrived with this one; while stopping too (the drain waits). */
	if (d->nfin++ == 0)
		event_active(d->flush, EV_TIMEOUT, 0);
}

static void
attempt_http_done(void *arg, const struct httpc_result *r)
{
	struct attempt *a = arg;
	struct deliver *d = a->d;
	struct hook *h = a->hook;
	const struct webhook *w = webhook_find(d->env->cfg, h->name);
	struct store_outcome o;
	char error[160] = "";
	int64_t now = now_ms(), delay = 0;
	bool ok = r->curl_code == 0 && r->status >= 200 && r->status < 300;

	a->call = NULL;
	if (r->curl_code != 0)
		snprintf(error, sizeof(error), "%.150s", r->error != NULL ? r->error : "failed");
	else if (!ok)
		snprintf(error, sizeof(error), "HTTP %ld", r->status);

	memset(&o, 0, sizeof(o));
	o.webhook = h->name;
	o.id = a->id;
	o.owner = d->env->instance;
	o.http_status = r->status;
	o.error = error;
	o.retention_s = d->env->cfg->delivery_retention;
	if (ok) {
		o.outcome = "ok";
		hook_success(h);
		log_info("delivered",
		    "webhook=%s delivery=%s event=%s status=%ld attempt=%ld ms=%ld", h->name, a->id,
		    a->event_id, r->status, a->attempts + 1, r->elapsed_ms);
	} else if (a->probe) {
		/* The receiver is still down: no attempt spent, due again at
		 * the next probe (other instances' breakers may be closed). */
		hook_probe_failed(h, w, now);
		o.outcome = "probe";
		o.next_due_ms = h->breaker.next_probe_ms;
		log_warnx("webhook probe failed",
		    "webhook=%s delivery=%s status=%ld error=\"%s\" probe_in_ms=%lld", h->name,
		    a->id, r->status, error, (long long)h->breaker.probe_interval_ms);
	} else {
		long ra = (r->status == 429 || r->status == 503) ? r->retry_after : -1;

		delay = webhook_next_delay_ms(a->schedule, a->nschedule, a->attempts + 1, ra,
		    backoff_random());
		hook_failure(h, w, now);
		if (delay < 0) {
			o.outcome = "dead";
			log_warnx("delivery dead",
			    "webhook=%s delivery=%s event=%s attempts=%ld status=%ld error=\"%s\"",
			    h->name, a->id, a->event_id, a->attempts + 1, r->status, error);
		} else {
			o.outcome = "retry";
			o.next_due_ms = now + delay;
			log_warnx("delivery failed",
			    "webhook=%s delivery=%s event=%s attempt=%ld status=%ld error=\"%s\" "
			    "next_in_ms=%lld",
			    h->name, a->id, a->event_id, a->attempts + 1, r->status, error,
			    (long long)delay);
		}
	}
	metrics_inc(d->env->metrics, "payrelay_deliveries_total", "webhook", h->name, "outcome",
	    ok                                   ? "delivered"
		: a->probe                       ? "probe_failed"
		: strcmp(o.outcome, "dead") == 0 ? "dead"
						 : "failed");
	outcome_queue(a, &o, error);
	attempt_sent(a);
	if (h->backlog)
		deliver_claim_soon(d);
}

static void
release_cb(void *arg, int rc, const char *answer)
{
	attempt_done(arg);
}

/* Gives one delivery back to Redis: due now, no attempt spent. */
static void
attempt_release(struct attempt *a)
{
	httpc_cancel(a->call);
	a->call = NULL;
	if (store_release(a->d->env->store, a->hook->name, a->id, a->d->env->instance, release_cb,
		a) == -1) {
		log_warnx("delivery not released, its lease will expire", "webhook=%s delivery=%s",
		    a->hook->name, a->id);
		attempt_done(a);
	}
}

static void
attempt_start(struct deliver *d, struct hook *h, const struct webhook *w,
    const struct store_claimed *it, bool probe)
{
	struct attempt *a = calloc(1, sizeof(*a));
	char ts_hdr[64], id_hdr[96], *sig = NULL, *sig_hdr = NULL;
	const char *headers[5];
	struct httpc_request rq = { 0 }; /* the answer's size does not matter */
	long long ts = (long long)(now_ms() / 1000);

	if (a == NULL)
		return; /* the lease expires and it comes back */
	a->d = d;
	a->hook = h;
	snprintf(a->id, sizeof(a->id), "%s", it->id);
	snprintf(a->event_id, sizeof(a->event_id), "%s", it->event_id);
	a->attempts = it->attempts;
	a->probe = probe;
	a->started_ms = now_ms();
	memcpy(a->schedule, w->schedule, sizeof(a->schedule));
	a->nschedule = w->nschedule;
	LIST_INSERT_HEAD(&d->attempts, a, link);
	d->nattempts++;
	h->in_flight++;
	a->sending = true;
	if (probe)
		breaker_probe_start(&h->breaker);

	snprintf(id_hdr, sizeof(id_hdr), "webhook-id: %s", it->event_id);
	snprintf(ts_hdr, sizeof(ts_hdr), "webhook-timestamp: %lld", ts);
	sig = webhook_signature(w, it->event_id, ts, it->body, it->body_len);
	if (sig != NULL && (sig_hdr = malloc(strlen(sig) + 32)) != NULL)
		sprintf(sig_hdr, "webhook-signature: %s", sig);
	free(sig);
	if (sig_hdr == NULL) {
		attempt_release(a);
		return;
	}
	headers[0] = "Content-Type: application/json";
	headers[1] = id_hdr;
	headers[2] = ts_hdr;
	headers[3] = sig_hdr;
	headers[4] = NULL;
	rq.method = "POST";
	rq.url = w->url;
	rq.headers = headers;
	rq.body = it->body;
	rq.body_len = it->body_len;
	rq.timeout_ms = w->timeout_ms;
	a->call = httpc_start(d->env->httpc, &rq, attempt_http_done, a);
	free(sig_hdr);
	if (a->call == NULL) {
		log_warnx("delivery not started", "webhook=%s delivery=%s", h->name, a->id);
		attempt_release(a);
	}
}

/* A delivery claimed as we stopped went back. */
static void
unclaimed_cb(void *arg, int rc, const char *answer)
{
	struct deliver *d = arg;

	d->nreleases--;
}

/* Gives a claimed delivery back untouched (no attempt started). */
static void
unclaim(struct deliver *d, struct hook *h, const char *id)
{
	if (store_release(d->env->store, h->name, id, d->env->instance, unclaimed_cb, d) == 0)
		d->nreleases++;
	else
		log_warnx("delivery not released, its lease will expire", "webhook=%s delivery=%s",
		    h->name, id);
}

static void
claim_cb(void *arg, int rc, const struct store_claimed *items, size_t n)
{
	struct claim *c = arg;
	struct deliver *d = c->d;
	struct hook *h = c->hook;
	const struct webhook *w = webhook_find(d->env->cfg, h->name);
	size_t i;

	h->claiming = false;
	d->nclaims--;
	for (i = 0; i < n; i++) {
		if (d->stopping || w == NULL) {
			/* Claimed as we stopped, or the webhook was removed by a
			 * reload: give it back untouched. */
			unclaim(d, h, items[i].id);
			continue;
		}
		attempt_start(d, h, w, &items[i], c->probe);
	}
	if (rc == 0 && !c->probe)
		h->backlog = n >= (size_t)c->max;
	if (h->backlog && n > 0 && !c->probe)
		deliver_claim_soon(d); /* there may be more */
	free(c);
}

static void
deliver_claim(struct deliver *d, struct hook *h, const struct webhook *w, int max, bool probe)
{
	struct claim *c = calloc(1, sizeof(*c));
	int64_t lease = now_ms() + w->timeout_ms + DELIVER_LEASE_MARGIN_MS;

	if (c == NULL)
		return;
	c->d = d;
	c->hook = h;
	c->max = max;
	c->probe = probe;
	if (store_claim(d->env->store, h->name, max, d->env->instance, lease, claim_cb, c) == -1) {
		free(c);
		return;
	}
	h->claiming = true;
	d->nclaims++;
}

static void
deliver_claim_all(struct deliver *d)
{
	const struct config *cfg = d->env->cfg;
	int64_t now = now_ms();
	size_t i;

	if (d->stopping || !store_ready(d->env->store))
		return;
	for (i = 0; i < cfg->nwebhooks; i++) {
		const struct webhook *w = &cfg->webhooks[i];
		struct hook *h = hook_get(d, w->name);
		enum breaker_allows allows;
		int room;

		if (h == NULL || h->claiming)
			continue;
		allows = breaker_allows(&h->breaker, now, h->in_flight + h->reserved);
		if (allows != BREAKER_SEND) {
			/* Open: one probe at a time, at growing intervals. */
			if (allows == BREAKER_PROBE)
				deliver_claim(d, h, w, 1, true);
			continue;
		}
		room = w->max_in_flight - h->in_flight - h->reserved;
		if (room > 0)
			deliver_claim(d, h, w,
			    room < DELIVER_CLAIM_BATCH ? room : DELIVER_CLAIM_BATCH, false);
	}
}

static void
deliver_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	deliver_claim_all(arg);
}

/* Coalesced: claims run once per loop turn, whatever woke us. */
static void
deliver_claim_soon(struct deliver *d)
{
	if (!d->stopping)
		event_active(d->kick, EV_TIMEOUT, 0);
}

void
deliver_kick(struct deliver *d)
{
	struct hook *h;

	if (d == NULL)
		return;
	for (h = d->hooks; h != NULL; h = h->next)
		h->backlog = true;
	deliver_claim_soon(d);
}

struct deliver *
deliver_new(struct env *env)
{
	struct deliver *d = calloc(1, sizeof(*d));
	struct timeval tv = { 0, DELIVER_TICK_MS * 1000 };

	if (d == NULL)
		return NULL;
	LIST_INIT(&d->attempts);
	d->fin_tail = &d->fin;
	d->env = env;
	d->tick = event_new(env->base, -1, EV_PERSIST, deliver_tick_cb, d);
	d->kick = event_new(env->base, -1, 0, deliver_tick_cb, d);
	d->flush = event_new(env->base, -1, 0, deliver_flush_cb, d);
	if (d->tick == NULL || d->kick == NULL || d->flush == NULL ||
	    event_add(d->tick, &tv) == -1) {
		deliver_free(d);
		return NULL;
	}
	return d;
}

void
deliver_stop(struct deliver *d)
{
	if (d == NULL)
		return;
	d->stopping = true;
	event_del(d->tick);
	event_del(d->kick);
}

void
deliver_abort(struct deliver *d)
{
	struct attempt *a, *next;

	if (d == NULL)
		return;
	deliver_stop(d);
	for (a = LIST_FIRST(&d->attempts); a != NULL; a = next) {
		next = LIST_NEXT(a, link);
		if (a->call != NULL) {
			log_info("delivery given back at shutdown", "webhook=%s delivery=%s",
			    a->hook->name, a->id);
			attempt_release(a);
		}
	}
}

size_t
deliver_busy(const struct deliver *d)
{
	return d == NULL ? 0 : d->nattempts + d->nclaims + d->nreserved + d->nreleases;
}

struct hook *
deliver_reserve(struct deliver *d, const struct webhook *w, int64_t *lease_until_ms)
{
	int64_t now = now_ms();
	struct hook *h;

	if (d == NULL || d->stopping || (h = hook_get(d, w->name)) == NULL ||
	    breaker_allows(&h->breaker, now, h->in_flight + h->reserved) != BREAKER_SEND ||
	    h->in_flight + h->reserved >= w->max_in_flight)
		return NULL;
	h->reserved++;
	d->nreserved++;
	/* As a claim's (deliver_claim): from now, the record step's start. */
	*lease_until_ms = now + w->timeout_ms + DELIVER_LEASE_MARGIN_MS;
	return h;
}

void
deliver_reserved(struct deliver *d, struct hook *h, int64_t lease_until_ms,
    const struct store_claimed *it)
{
	const struct webhook *w = webhook_find(d->env->cfg, h->name);

	h->reserved--;
	d->nreserved--;
	if (it == NULL) {
		/* The place is free again (stopping: the drain sees it). */
		if (h->backlog)
			deliver_claim_soon(d);
		return;
	}
	if (d->stopping || w == NULL) {
		/* Answered as we stopped, or the webhook was removed by a
		 * reload: given back untouched, as claim_cb does. */
		unclaim(d, h, it->id);
		return;
	}
	if (now_ms() + w->timeout_ms >= lease_until_ms) {
		/* The answer came so late (a WAIT for replicas) that the lease
		 * would end before the request's timeout: another instance could
		 * take it over mid-request. It goes out after its lease. */
		log_warnx("delivery left to its lease",
		    "webhook=%s delivery=%s "
		    "reason=\"record step answered late\"",
		    h->name, it->id);
		if (h->backlog)
			deliver_claim_soon(d);
		return;
	}
	attempt_start(d, h, w, it, false);
}

bool
deliver_breaker_open(struct deliver *d, const char *webhook)
{
	struct hook *h;

	for (h = d->hooks; h != NULL; h = h->next)
		if (strcmp(h->name, webhook) == 0)
			return h->breaker.open;
	return false;
}

int
deliver_requests(struct deliver *d, const char *webhook)
{
	struct hook *h;

	for (h = d->hooks; h != NULL; h = h->next)
		if (strcmp(h->name, webhook) == 0)
			return h->in_flight;
	return 0;
}

void
deliver_free(struct deliver *d)
{
	struct hook *h, *hn;

	if (d == NULL)
		return;
	/* Whatever is left was cancelled with the HTTP engine; the leases
	 * expire and another instance delivers. */
	while (!LIST_EMPTY(&d->attempts))
		attempt_unlink_free(LIST_FIRST(&d->attempts));
	for (h = d->hooks; h != NULL; h = hn) {
		hn = h->next;
		free(h->name);
		free(h);
	}
	if (d->tick != NULL)
		event_free(d->tick);
	if (d->kick != NULL)
		event_free(d->kick);
	if (d->flush != NULL)
		event_free(d->flush);
	free(d);
}
