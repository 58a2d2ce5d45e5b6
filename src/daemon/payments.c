#include "payments.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "amount.h"
#include "config.h"
#include "daemon.h"
#include "family.h"
#include "httpc.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "store.h"

/* One creation, from the request to its answer. Owns every string. */
struct payment {
	struct payments *ps;
	struct httpc_call *call; /* while the gateway is asked */
	TAILQ_ENTRY(payment) entry;
	struct env *env;
	struct evhttp_request *req;
	char channel[65];
	char *out_trade_no;
	int64_t amount_fen; /* -1: the payment names no amount (gatepay product) */
	bool redirect;      /* mode redirect: no gateway call */
	char *return_to;    /* NULL: none given */
	int64_t expires_ms;
	char owner[128]; /* of the creation lock */
	/* Built before Redis is asked, so a request that cannot be made
	 * never takes the lock: the gateway call (api), or the URL (redirect). */
	struct poll_query q;
	char *redirect_url;
	struct pay_result res;
};

struct payments {
	struct env *env;
	TAILQ_HEAD(, payment) running; /* from the first Redis step to the answer */
	size_t n;
	bool stopping;
	/* The 503s of payments_stop are written by the loop's next turns:
	 * busy until this one-shot timer, so the drain does not exit first. */
	struct event *flush;
	bool flushing;
};

/* A reply to a local client is written within a few turns of the loop. */
#define PAYMENTS_FLUSH_MS 200

/* Answered (or dropped): off the list, and freed. */
static void
payment_free(struct payment *p)
{
	if (p == NULL)
		return;
	if (p->ps != NULL) {
		TAILQ_REMOVE(&p->ps->running, p, entry);
		p->ps->n--;
	}
	free(p->out_trade_no);
	free(p->return_to);
	/* The URL and body are signed: a replayable request. */
	if (p->q.body != NULL)
		explicit_bzero(p->q.body, p->q.body_len);
	poll_query_free(&p->q);
	free(p->redirect_url);
	pay_result_free(&p->res);
	free(p);
}

static void
count(struct payment *p, const char *outcome)
{
	metrics_inc(p->env->metrics, "payrelay_payments_total", "channel", p->channel, "outcome",
	    outcome);
}

/* {"channel","out_trade_no","amount","pay_url"|"qrcode"|"urlscheme","gateway_trade_no"}:
 * the same for the first answer and every repeat (built from what Redis
 * holds, or from what it was just given). */
static json_t *
answer_json(const struct payment *p, const char *amount_fen, const char *kind, const char *target,
    const char *gateway_trade_no)
{
	json_t *o = json_object(), *amt = json_null(), *gw = json_null(), *t;
	char yuan[32];

	if (amount_fen != NULL && *amount_fen != '\0') {
		amount_format((int64_t)strtoll(amount_fen, NULL, 10), yuan, sizeof(yuan));
		amt = json_string(yuan);
	}
	if (gateway_trade_no != NULL && *gateway_trade_no != '\0' &&
	    (gw = json_string(gateway_trade_no)) == NULL)
		gw = json_null(); /* not UTF-8: never from a sane gateway */
	if ((t = json_string(target)) == NULL)
		t = json_null();
	if (o == NULL)
		return NULL;
	json_object_set_new(o, "channel", json_string(p->channel));
	json_object_set_new(o, "out_trade_no", json_string(p->out_trade_no));
	json_object_set_new(o, "amount", amt);
	json_object_set_new(o, kind, t);
	json_object_set_new(o, "gateway_trade_no", gw);
	return o;
}

/* The order is registered with another amount, or settled: 409. */
static void
reply_conflict(struct payment *p, enum store_payment_what what, const struct store_payment *sp)
{
	char yuan[32] = "";
	json_t *o;

	if (*sp->amount_fen != '\0')
		amount_format((int64_t)strtoll(sp->amount_fen, NULL, 10), yuan, sizeof(yuan));
	if (what == STORE_PAY_CONFLICT)
		o = json_pack("{s:s,s:s,s:s?}", "error",
		    "the order is created or registered with another amount", "state", sp->state,
		    "registered_amount", *yuan != '\0' ? yuan : NULL);
	else
		o = json_pack("{s:s,s:s}", "error",
		    "the order is registered and no longer pending: no payment is created", "state",
		    sp->state);
	reply_json(p->req, 409, o);
}

static void
registered(void *arg, enum store_payment_what what, const struct store_payment *sp)
{
	struct payment *p = arg;
	char fen[24];

	switch (what) {
	case STORE_PAY_CREATED:
		snprintf(fen, sizeof(fen), "%lld", (long long)p->amount_fen);
		log_info("payment created",
		    "channel=%s out_trade_no=\"%.64s\" amount_fen=%s mode=%s kind=%s", p->channel,
		    p->out_trade_no, p->amount_fen >= 0 ? fen : "none",
		    p->redirect ? "redirect" : "api", pay_url_kind_str(p->res.kind));
		count(p, "created");
		reply_json(p->req, 201,
		    answer_json(p, p->amount_fen >= 0 ? fen : "", pay_url_kind_str(p->res.kind),
			p->res.url, p->res.trade_no));
		break;
	case STORE_PAY_DONE:
		/* Another creation stored first (its lock had expired): its
		 * answer stands, the payer pays that one. */
		log_warnx("payment created twice at the gateway: the first answer stands",
		    "channel=%s out_trade_no=\"%.64s\"", p->channel, p->out_trade_no);
		count(p, "existing");
		reply_json(p->req, 200,
		    answer_json(p, sp->amount_fen, sp->pay_kind, sp->pay_target,
			sp->gateway_trade_no));
		break;
	case STORE_PAY_CONFLICT:
	case STORE_PAY_SETTLED:
		reply_conflict(p, what, sp);
		break;
	default:
		/* Created at the gateway, not stored: a retry calls it again. */
		log_warnx("payment created at the gateway but not stored: redis failed",
		    "channel=%s out_trade_no=\"%.64s\"", p->channel, p->out_trade_no);
		count(p, "failed");
		reply_error(p->req, 503,
		    "redis failed: the payment was created at the gateway but not stored");
		break;
	}
	payment_free(p);
}

static void
store_it(struct payment *p)
{
	const struct channel *ch = config_channel(p->env->cfg, p->channel);
	int64_t now = now_ms(), first = 0;
	struct store_payment_new n = { 0 };

	if (ch != NULL && ch->api_base != NULL) {
		first = now + (int64_t)ch->poll_after * 1000;
		if (first > p->expires_ms)
			first = p->expires_ms;
	}
	n.channel = p->channel;
	n.out_trade_no = p->out_trade_no;
	n.amount_fen = p->amount_fen;
	n.expires_ms = p->expires_ms;
	n.first_poll_ms = first;
	n.pay_kind = pay_url_kind_str(p->res.kind);
	n.pay_target = p->res.url;
	n.gateway_trade_no = p->res.trade_no;
	n.return_to = p->return_to;
	n.pay_mode = p->redirect ? "redirect" : "api";
	n.owner = p->owner;
	if (store_payment_register(p->env->store, &n, registered, p) == -1) {
		log_warnx("payment created at the gateway but not stored: redis is not ready",
		    "channel=%s out_trade_no=\"%.64s\"", p->channel, p->out_trade_no);
		count(p, "failed");
		reply_error(p->req, 503,
		    "redis is not ready: the payment was created at the gateway but not stored");
		payment_free(p);
	}
}

/* Nothing stored: the lock goes back, and the caller may try again. */
static void
unlock(struct payment *p)
{
	if (store_payment_unlock(p->env->store, p->channel, p->out_trade_no, p->owner) == -1)
		log_warnx("cannot release a payment's creation lock: it expires by itself",
		    "channel=%s out_trade_no=\"%.64s\"", p->channel, p->out_trade_no);
}

/* 502 with what the gateway said, every configured secret masked (a
 * gateway may echo what it was sent). */
static void
refused(struct payment *p, long status)
{
	const struct config *cfg = p->env->cfg;

	config_mask_secrets(cfg, p->res.code);
	config_mask_secrets(cfg, p->res.msg);
	log_warnx("payment refused by the gateway",
	    "channel=%s out_trade_no=\"%.64s\" http_status=%ld code=\"%s\" msg=\"%s\"", p->channel,
	    p->out_trade_no, status, p->res.code, p->res.msg);
	count(p, *p->res.code != '\0' ? "refused" : "failed");
	reply_json(p->req, 502,
	    json_pack("{s:s,s:s,s:s,s:I}", "error",
		*p->res.code != '\0' ? "the gateway refused the payment"
				     : "no usable answer from the gateway",
		"gateway_code", p->res.code, "gateway_message", p->res.msg, "http_status",
		(json_int_t)status));
	unlock(p);
	payment_free(p);
}

static void
gateway_done(void *arg, const struct httpc_result *r)
{
	struct payment *p = arg;
	const struct channel *ch = config_channel(p->env->cfg, p->channel);

	p->call = NULL;
	if (r->curl_code != 0) {
		/* curl's text may quote the URL */
		pay_result_error(&p->res, "", "the gateway call failed: %.180s",
		    r->error != NULL ? r->error : "error");
		refused(p, r->status);
		return;
	}
	if (ch == NULL || ch->family->create_parse == NULL) {
		pay_result_error(&p->res, "", "the channel changed in a reload");
		refused(p, r->status);
		return;
	}
	/* Any status: gateways answer their errors as 200 or not at all,
	 * and an HTML error page is no JSON. */
	ch->family->create_parse(ch, r->body, r->body_len, &p->res);
	if (!p->res.ok) {
		if (*p->res.code == '\0' && (r->status < 200 || r->status > 299))
			pay_result_error(&p->res, "", "the gateway answered HTTP %ld", r->status);
		refused(p, r->status);
		return;
	}
	store_it(p);
}

static void
begun(void *arg, enum store_payment_what what, const struct store_payment *sp)
{
	struct payment *p = arg;

	switch (what) {
	case STORE_PAY_GO:
		break;
	case STORE_PAY_DONE:
		count(p, "existing");
		reply_json(p->req, 200,
		    answer_json(p, sp->amount_fen, sp->pay_kind, sp->pay_target,
			sp->gateway_trade_no));
		payment_free(p);
		return;
	case STORE_PAY_CONFLICT:
	case STORE_PAY_SETTLED:
		reply_conflict(p, what, sp);
		payment_free(p);
		return;
	case STORE_PAY_BUSY:
		reply_json(p->req, 409,
		    json_pack("{s:s}", "error",
			"another creation of this order is running: retry in a few seconds for "
			"its answer"));
		payment_free(p);
		return;
	default:
		reply_error(p->req, 503, "redis failed");
		payment_free(p);
		return;
	}
	if (p->ps->stopping) {
		unlock(p);
		reply_error(p->req, 503, "payrelayd is stopping: retry");
		payment_free(p);
		return;
	}
	if (p->redirect) {
		p->res.ok = true;
		p->res.kind = PAY_URL;
		p->res.url = p->redirect_url;
		p->redirect_url = NULL;
		store_it(p);
		return;
	}
	if ((p->call = httpc_start_gateway(p->env->httpc, &p->q, PAYMENTS_TIMEOUT_MS, gateway_done,
		 p)) == NULL) {
		unlock(p);
		reply_error(p->req, 503, "cannot start the gateway call");
		payment_free(p);
	}
}

/* A string member: NULL when absent or null; *bad set when it is present
 * and not a string of 1 to `max` bytes without a NUL or control byte
 * (UTF-8 is jansson's: it refuses anything else). */
static const char *
member(json_t *body, const char *name, size_t max, bool *bad)
{
	json_t *v = json_object_get(body, name);
	const char *s;
	size_t n, i;

	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*bad = true;
		return NULL;
	}
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 || n > max || strlen(s) != n) {
		*bad = true;
		return NULL;
	}
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			*bad = true;
			return NULL;
		}
	return s;
}

static bool
printable_token(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

void
payments_create(struct env *env, struct evhttp_request *req)
{
	static const char *const known[] = { "channel", "out_trade_no", "amount", "method",
		"subject", "param", "client_ip", "device", "return_to", "expires_in", "mode",
		"product_id", "fields", NULL };
	static unsigned long long seq;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const struct config *cfg = env->cfg;
	const struct channel *ch;
	struct pay_request pr = { 0 };
	struct payment *p = NULL;
	const char *channel, *out, *amount, *mode, *why = NULL, *key;
	char yuan[32], *notify_url = NULL, *return_url = NULL;
	json_t *body, *jexp, *v;
	json_error_t jerr;
	json_int_t expires_in = 86400;
	bool bad = false;
	int64_t fen = -1;

	body =
	    json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
	if (body == NULL || !json_is_object(body)) {
		reply_error(req, 400, "the body must be a JSON object");
		goto out;
	}
	json_object_foreach(body, key, v)
	{
		const char *const *k;

		for (k = known; *k != NULL && strcmp(*k, key) != 0; k++)
			;
		if (*k == NULL) {
			char msg[160];

			snprintf(msg, sizeof(msg), "unknown member \"%.64s\"", key);
			reply_error(req, 400, msg);
			goto out;
		}
	}
	channel = json_string_value(json_object_get(body, "channel"));
	out = json_string_value(json_object_get(body, "out_trade_no"));
	if (channel == NULL || out == NULL) {
		reply_error(req, 400, "channel and out_trade_no are required");
		goto out;
	}
	if ((ch = config_channel(cfg, channel)) == NULL) {
		reply_error(req, 404, "unknown channel");
		goto out;
	}
	if ((ch->family->caps & FAMILY_CREATE) == 0 || ch->family->create_request == NULL) {
		reply_error(req, 501, "this channel's gateway family cannot create payments");
		goto out;
	}
	if (ch->api_base == NULL) {
		reply_error(req, 400, "the channel has no api_base: payments cannot be created");
		goto out;
	}
	if (cfg->public_url == NULL) {
		reply_error(req, 503,
		    "[daemon] public_url is not set: gateways could not reach payrelayd's "
		    "notify and return URLs, so no payment is created");
		goto out;
	}
	/* Its notify is refused unless the id is canonical (SPEC §2.5). */
	if (*out == '\0' || strlen(out) > PAYMENTS_MAX_OUT_TRADE_NO || !family_canonical_id(out) ||
	    strchr(out, '/') != NULL) {
		reply_error(req, 400,
		    "out_trade_no must be 1 to 128 printable ASCII characters without '&', "
		    "'=', '%', '/' or white space");
		goto out;
	}
	if ((v = json_object_get(body, "amount")) != NULL && !json_is_null(v)) {
		amount = json_string_value(v);
		if (amount == NULL || amount_parse(amount, strlen(amount), &fen) == -1 ||
		    fen <= 0) {
			reply_error(req, 400,
			    "amount must be a decimal string of yuan above zero, like \"1.00\"");
			goto out;
		}
		amount_format(fen, yuan, sizeof(yuan));
		pr.amount = yuan;
	}
	pr.out_trade_no = out;
	pr.method = member(body, "method", 64, &bad);
	pr.subject = member(body, "subject", PAYMENTS_MAX_TEXT, &bad);
	pr.param = member(body, "param", PAYMENTS_MAX_TEXT, &bad);
	pr.client_ip = member(body, "client_ip", 64, &bad);
	pr.device = member(body, "device", 32, &bad);
	pr.product_id = member(body, "product_id", PAYMENTS_MAX_TEXT, &bad);
	pr.fields = member(body, "fields", PAYMENTS_MAX_TEXT, &bad);
	if (bad) {
		reply_error(req, 400,
		    "method, subject, param, client_ip, device, product_id and fields must be "
		    "non-empty strings without control characters (method at most 64 bytes, "
		    "client_ip 64, device 32, the others 1024)");
		goto out;
	}
	if ((pr.method != NULL && !printable_token(pr.method)) ||
	    (pr.client_ip != NULL && !printable_token(pr.client_ip)) ||
	    (pr.device != NULL && !printable_token(pr.device))) {
		reply_error(req, 400, "method, client_ip and device must be printable ASCII");
		goto out;
	}
	if (fen < 0 && pr.product_id == NULL && pr.fields == NULL) {
		reply_error(req, 400, "amount is required");
		goto out;
	}
	mode = json_string_value(json_object_get(body, "mode"));
	if (json_object_get(body, "mode") != NULL &&
	    (mode == NULL || (strcmp(mode, "api") != 0 && strcmp(mode, "redirect") != 0))) {
		reply_error(req, 400, "mode must be \"api\" or \"redirect\"");
		goto out;
	}
	if (mode != NULL && strcmp(mode, "redirect") == 0 && ch->family->create_redirect == NULL) {
		reply_error(req, 400,
		    "this channel's gateway has no payment page to redirect to: use mode api");
		goto out;
	}
	if ((v = json_object_get(body, "return_to")) != NULL &&
	    (!json_is_string(v) || !config_return_url_ok(cfg, json_string_value(v)))) {
		reply_error(req, 400,
		    "return_to must be an http(s) URL on a host of [daemon] return_hosts");
		goto out;
	}
	if ((jexp = json_object_get(body, "expires_in")) != NULL) {
		if (!json_is_integer(jexp) || json_integer_value(jexp) < 1 ||
		    json_integer_value(jexp) > PAYMENTS_MAX_EXPIRES_IN) {
			reply_error(req, 400, "expires_in must be whole seconds from 1 to 2592000");
			goto out;
		}
		expires_in = json_integer_value(jexp);
	}
	if (asprintf(&notify_url, "%s/notify/%s", cfg->public_url, ch->name) == -1)
		notify_url = NULL;
	if (asprintf(&return_url, "%s/return/%s", cfg->public_url, ch->name) == -1)
		return_url = NULL;
	if (notify_url == NULL || return_url == NULL || (p = calloc(1, sizeof(*p))) == NULL ||
	    (p->out_trade_no = strdup(out)) == NULL ||
	    (v != NULL && (p->return_to = strdup(json_string_value(v))) == NULL)) {
		reply_error(req, 503, "out of memory");
		goto out;
	}
	pr.notify_url = notify_url;
	pr.return_url = return_url;
	pr.now = time(NULL);
	p->env = env;
	p->req = req;
	snprintf(p->channel, sizeof(p->channel), "%s", ch->name);
	p->amount_fen = fen;
	p->redirect = mode != NULL && strcmp(mode, "redirect") == 0;
	p->expires_ms = now_ms() + (int64_t)expires_in * 1000;
	snprintf(p->owner, sizeof(p->owner), "%s:%llu", env->instance, ++seq);
	if ((p->redirect ? ch->family->create_redirect(ch, &pr, &p->redirect_url, &why)
			 : ch->family->create_request(ch, &pr, &p->q, &why)) == -1) {
		reply_error(req, why != NULL ? 400 : 503,
		    why != NULL ? why : "cannot build the gateway request");
		goto out;
	}
	if (env->payments == NULL || env->payments->stopping) {
		reply_error(req, 503, "payrelayd is stopping");
		goto out;
	}
	if (store_payment_begin(env->store, p->channel, p->out_trade_no, p->amount_fen, p->owner,
		PAYMENTS_LOCK_MS, begun, p) == -1) {
		reply_error(req, 503, "redis is not ready");
		goto out;
	}
	/* begun() owns it now, and the list knows it until it is answered */
	p->ps = env->payments;
	TAILQ_INSERT_TAIL(&p->ps->running, p, entry);
	p->ps->n++;
	p = NULL;
out:
	payment_free(p);
	free(notify_url);
	free(return_url);
	json_decref(body);
}

static void
flushed(evutil_socket_t fd, short what, void *arg)
{
	struct payments *ps = arg;

	(void)fd;
	(void)what;
	ps->flushing = false;
}

struct payments *
payments_new(struct env *env)
{
	struct payments *ps = calloc(1, sizeof(*ps));

	if (ps == NULL)
		return NULL;
	ps->env = env;
	TAILQ_INIT(&ps->running);
	if ((ps->flush = evtimer_new(env->base, flushed, ps)) == NULL) {
		free(ps);
		return NULL;
	}
	return ps;
}

void
payments_stop(struct payments *ps)
{
	struct payment *p, *next;

	if (ps == NULL)
		return;
	ps->stopping = true;
	for (p = TAILQ_FIRST(&ps->running); p != NULL; p = next) {
		next = TAILQ_NEXT(p, entry);
		if (p->call == NULL)
			continue; /* waiting for Redis: its answer comes */
		httpc_cancel(p->call);
		p->call = NULL;
		log_warnx("payment creation stopped while the gateway was asked",
		    "channel=%s out_trade_no=\"%.64s\"", p->channel, p->out_trade_no);
		count(p, "failed");
		unlock(p);
		reply_error(p->req, 503,
		    "payrelayd is stopping: the gateway call was cut short (it may have created "
		    "the payment); retry");
		payment_free(p);
		if (!ps->flushing) {
			struct timeval tv = { 0, PAYMENTS_FLUSH_MS * 1000 };

			ps->flushing = true;
			evtimer_add(ps->flush, &tv);
		}
	}
}

size_t
payments_busy(const struct payments *ps)
{
	return ps != NULL ? ps->n + (ps->flushing ? 1 : 0) : 0;
}

void
payments_free(struct payments *ps)
{
	struct payment *p;

	if (ps == NULL)
		return;
	while ((p = TAILQ_FIRST(&ps->running)) != NULL) {
		httpc_cancel(p->call);
		p->call = NULL;
		payment_free(p);
	}
	event_free(ps->flush);
	free(ps);
}
