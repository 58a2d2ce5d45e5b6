#include "returns.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "confirm.h"
#include "config.h"
#include "conns.h"
#include "crypto.h"
#include "daemon.h"
#include "event.h"
#include "family.h"
#include "form.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "store.h"
#include "testcb.h"

/* Warnings about returns are logged at most this many times a second: a
 * browser, unlike a gateway, is anyone. */
#define RETURN_LOGS_PER_SEC 20

/* What the merchant's page is told (SPEC §10.2). */
enum ret_status {
	RET_PAID,    /* recorded now, or before (its notify came first) */
	RET_PENDING, /* verified, but not (yet) recorded: the notify and polls settle it */
	RET_INVALID, /* not verified: nothing recorded */
};

static const char *const ret_status_str[] = {
	[RET_PAID] = "paid",
	[RET_PENDING] = "pending",
	[RET_INVALID] = "invalid",
};

/* One return being answered. Owns copies of what it needs later, since a
 * reload may free the channel meanwhile. */
struct ret {
	struct env *env;
	struct evhttp_request *req; /* NULL once the connection is gone */
	struct conn *conn;          /* watched while this is pending */
	bool replying;              /* the answer is being written */
	char channel[65];
	char event_id[EVENT_ID_LEN + 1]; /* "" until verified */
	char *trade_no;                  /* NULL until verified */
	/* The verified order id; for an invalid return the payer's claim
	 * (canonical ids only), or NULL. */
	char *out_trade_no;
	int64_t amount_fen;
	int64_t received_ms;
	enum ret_status status;
	char why[160]; /* why it is pending or invalid, for the log */
	/* While its confirmation runs: the return's parameters, from which
	 * the event is built again once the gateway answered. */
	struct params params;
};

/* The warning lines of the current second, and those left out. */
static struct {
	time_t window;
	unsigned logged, suppressed;
} warns;

static bool
ret_may_warn(void)
{
	time_t now = time(NULL);

	if (now != warns.window) {
		if (warns.suppressed > 0)
			log_warnx("return warnings not logged", "count=%u", warns.suppressed);
		warns.window = now;
		warns.logged = warns.suppressed = 0;
	}
	if (++warns.logged > RETURN_LOGS_PER_SEC) {
		warns.suppressed++;
		return false;
	}
	return true;
}

/* `channel` is a configured name or NULL: never a label a browser chose. */
static void
ret_count(struct env *env, const char *channel, const char *result)
{
	metrics_inc(env->metrics, "payrelay_returns_total", "channel",
	    channel != NULL ? channel : "unknown", "result", result);
}

/* A short page for the payer when there is nowhere to send them. */
static void
ret_page(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *buf = evbuffer_new();

	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (buf != NULL)
		evbuffer_add_printf(buf, "%s\n", text);
	evhttp_send_reply(req, code, reason, buf);
	if (buf != NULL)
		evbuffer_free(buf);
}

static void
ret_free(struct ret *r)
{
	if (r == NULL)
		return;
	free(r->trade_no);
	free(r->out_trade_no);
	params_free(&r->params);
	free(r);
}

/* The return is over for us: answered, or its connection gone. */
static void
ret_done(struct ret *r)
{
	struct env *env = r->env;

	ret_free(r);
	env->returning--;
}

static void
ret_conn_closed(void *arg)
{
	struct ret *r = arg;

	if (r->replying) {
		ret_done(r);
		return;
	}
	r->req = NULL;
}

/* The answer was written out: only now may a shutdown close the connection. */
static void
ret_reply_sent(struct evhttp_request *req, void *arg)
{
	struct ret *r = arg;

	(void)req;
	conn_watch(r->conn, NULL, NULL);
	ret_done(r);
}

/* lowercase hex HMAC-SHA256 of "out_trade_no.status.ts" under the return
 * secret. Returns 0 or -1 (the crypto library failed). */
static int
ret_sig(const struct config *cfg, const char *otn, const char *status, long long ts, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char mac[32];
	struct sbuf s;
	size_t i;
	int rc = -1;

	sbuf_init(&s);
	if (sbuf_printf(&s, "%s.%s.%lld", otn, status, ts) == -1 ||
	    crypto_hmac_sha256(cfg->return_secret, cfg->return_secret_len, s.p, s.len, mac) == -1)
		goto out;
	for (i = 0; i < 32; i++) {
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 0xf];
	}
	out[64] = '\0';
	rc = 0;
out:
	sbuf_free(&s);
	return rc;
}

/* `base` with out_trade_no, status, ts and sig added to its query: '?' or
 * '&' as the URL needs, before its fragment, values URL-encoded. The
 * caller frees the result; NULL when out of memory. */
static char *
ret_location(const char *base, const char *otn, const char *status, long long ts, const char *sig)
{
	const char *hash = strchr(base, '#');
	size_t blen = hash != NULL ? (size_t)(hash - base) : strlen(base);
	const char *q = memchr(base, '?', blen);
	struct sbuf url, qs;
	char tsbuf[24];
	char *out = NULL;

	sbuf_init(&url);
	sbuf_init(&qs);
	snprintf(tsbuf, sizeof(tsbuf), "%lld", ts);
	if (family_form_add(&qs, "out_trade_no", otn) == -1 ||
	    family_form_add(&qs, "status", status) == -1 ||
	    family_form_add(&qs, "ts", tsbuf) == -1 || family_form_add(&qs, "sig", sig) == -1)
		goto out;
	if (sbuf_add(&url, base, blen) == -1)
		goto out;
	if (q == NULL) {
		if (sbuf_addc(&url, '?') == -1)
			goto out;
	} else if (base[blen - 1] != '?' && base[blen - 1] != '&') {
		if (sbuf_addc(&url, '&') == -1)
			goto out;
	}
	if (sbuf_add(&url, qs.p, qs.len) == -1 || (hash != NULL && sbuf_adds(&url, hash) == -1))
		goto out;
	out = sbuf_steal(&url);
out:
	sbuf_free(&url);
	sbuf_free(&qs);
	return out;
}

/* Answers the return: a 302 to the order's return_to (`order_url`, NULL
 * when none) or else the channel's, each checked against return_hosts
 * now (a reload may have changed them); a short page when neither may be
 * used. Ends `r`. */
static void
ret_redirect(struct ret *r, const char *order_url)
{
	struct env *env = r->env;
	const struct config *cfg = env->cfg;
	const struct channel *ch = config_channel(cfg, r->channel);
	const char *status = ret_status_str[r->status];
	const char *otn = r->out_trade_no != NULL ? r->out_trade_no : "";
	const char *target = NULL, *from = "none";
	struct evhttp_request *req = r->req;
	struct evkeyvalq *h;
	struct evbuffer *buf;
	char sig[65], *loc;
	long long ts = (long long)time(NULL);

	if (req == NULL) {
		log_info("return connection closed before the answer",
		    "channel=%s status=%s out_trade_no=\"%.64s\"", r->channel, status, otn);
		ret_count(env, r->channel, status);
		ret_done(r);
		return;
	}
	if (order_url != NULL) {
		if (config_return_url_ok(cfg, order_url)) {
			target = order_url;
			from = "order";
		} else if (ret_may_warn()) {
			log_warnx("order's return_to refused: its host is not in return_hosts",
			    "channel=%s out_trade_no=\"%.64s\"", r->channel, otn);
		}
	}
	if (target == NULL && ch != NULL && ch->return_to != NULL &&
	    config_return_url_ok(cfg, ch->return_to)) {
		target = ch->return_to;
		from = "channel";
	}
	/* As in ingest.c: over once the answer is written, or the connection
	 * closed while writing it. */
	r->replying = true;
	evhttp_request_set_on_complete_cb(req, ret_reply_sent, r);
	if (cfg->return_secret == NULL) {
		if (ret_may_warn())
			log_warnx("return not redirected: no [daemon] return_secret",
			    "channel=%s status=%s out_trade_no=\"%.64s\"", r->channel, status, otn);
		ret_count(env, r->channel, "disabled");
		ret_page(req, 503, "Service Unavailable", "Payment returns are not configured.");
		return;
	}
	if (target == NULL) {
		if (ret_may_warn())
			log_warnx("return not redirected: no return_to on a host of return_hosts",
			    "channel=%s status=%s out_trade_no=\"%.64s\"", r->channel, status, otn);
		ret_count(env, r->channel, "no_redirect");
		ret_page(req, 400, "Bad Request",
		    "This payment has no return address. Please go back to the shop.");
		return;
	}
	if (ret_sig(cfg, otn, status, ts, sig) == -1 ||
	    (loc = ret_location(target, otn, status, ts, sig)) == NULL) {
		log_warnx("return not redirected: the crypto library failed or out of memory",
		    "channel=%s status=%s", r->channel, status);
		ret_count(env, r->channel, "other");
		ret_page(req, 503, "Service Unavailable", "Please try again.");
		return;
	}
	if (r->status == RET_INVALID) {
		if (ret_may_warn())
			log_warnx("return invalid",
			    "channel=%s reason=\"%s\" out_trade_no=\"%.64s\" redirect=%s",
			    r->channel, r->why, otn, from);
	} else {
		log_info("return",
		    "channel=%s status=%s event=%s out_trade_no=\"%.64s\" "
		    "trade_no=\"%.64s\" redirect=%s reason=\"%s\"",
		    r->channel, status, r->event_id[0] != '\0' ? r->event_id : "-", otn,
		    r->trade_no != NULL ? r->trade_no : "", from, r->why);
	}
	ret_count(env, r->channel, status);
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Location", loc);
	evhttp_add_header(h, "Cache-Control", "no-store");
	/* The return URL held the gateway's signed parameters: not for the
	 * next page's Referer. */
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	if ((buf = evbuffer_new()) != NULL)
		evbuffer_add_printf(buf, "Redirecting to the shop.\n");
	evhttp_send_reply(req, 302, "Found", buf);
	if (buf != NULL)
		evbuffer_free(buf);
	free(loc);
}

static void
ret_got_return_to(void *arg, int rc, const char *return_to)
{
	struct ret *r = arg;

	if (rc == -1 && ret_may_warn())
		log_warnx("order's return_to not read: redis failed",
		    "channel=%s out_trade_no=\"%.64s\"", r->channel, r->out_trade_no);
	ret_redirect(r, rc == 0 ? return_to : NULL);
}

/* The status is known: find where the payer goes. The order's return_to
 * (given at creation) wins over the channel's; without Redis, the
 * channel's. */
static void
ret_settle(struct ret *r, enum ret_status st)
{
	r->status = st;
	if (r->req != NULL && r->out_trade_no != NULL &&
	    store_order_return_to(r->env->store, r->channel, r->out_trade_no, ret_got_return_to,
		r) == 0)
		return;
	ret_redirect(r, NULL);
}

/* Settles `r` as pending or invalid, `fmt` saying why (for the log). */
static void ret_not_recorded(struct ret *r, enum ret_status st, const char *fmt, ...)
    PRINTF_LIKE(3, 4);

static void
ret_not_recorded(struct ret *r, enum ret_status st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
	ret_settle(r, st);
}

static void
ret_recorded(void *arg, enum store_result res, const char *type)
{
	struct ret *r = arg;

	switch (res) {
	case STORE_NEW:
		log_info("return recorded",
		    "channel=%s event=%s type=%s trade_no=\"%.64s\" "
		    "out_trade_no=\"%.64s\" amount_fen=%lld source=return",
		    r->channel, r->event_id, type, r->trade_no, r->out_trade_no,
		    (long long)r->amount_fen);
		ret_settle(r, RET_PAID);
		return;
	case STORE_DUP:
		ret_settle(r, RET_PAID);
		return;
	case STORE_ERROR:
	case STORE_TIMEOUT:
	case STORE_UNREPLICATED:
		break;
	}
	ret_not_recorded(r, RET_PENDING, "not recorded: %s",
	    res == STORE_TIMEOUT            ? "redis timeout"
		: res == STORE_UNREPLICATED ? "redis replicas"
					    : "redis error");
}

/* Hands the verified paid return to the record step (record.c), as a
 * callback would be. */
static void
ret_record(struct ret *r, const struct channel *ch, const struct event *ev)
{
	if (record_event(r->env, ch, ev, ret_recorded, r) == -1)
		ret_not_recorded(r, RET_PENDING, "not recorded: redis not ready");
}

static void
ret_confirmed(void *arg, enum confirm_outcome o, const char *detail)
{
	struct ret *r = arg;
	struct env *env = r->env;
	const struct channel *ch;
	struct event ev;

	/* Unconfirmed is never invalid: the signature was good, and the
	 * gateway may not know yet what its own page just told the payer. */
	if (o != CONFIRM_CONFIRMED) {
		ret_not_recorded(r, RET_PENDING, "not confirmed by query (%s): %.100s",
		    confirm_outcome_str(o), detail);
		return;
	}
	/* Built again from the current channel, and still the same event. */
	ch = config_channel(env->cfg, r->channel);
	memset(&ev, 0, sizeof(ev));
	if (ch == NULL || !family_returns(ch->family) ||
	    ch->family->verify_return(ch, &r->params, time(NULL), &ev) != VERDICT_OK ||
	    strcmp(ev.id, r->event_id) != 0) {
		ret_not_recorded(r, RET_PENDING, "the channel was changed by a reload");
		return;
	}
	ev.source = SOURCE_RETURN;
	ev.received_ms = r->received_ms;
	ev.confirmed_by = "query";
	ret_record(r, ch, &ev);
}

/* Verifies the return of `ch` held by r->params and settles it, now or
 * once Redis or the gateway answered. */
static void
ret_verify(struct ret *r, const struct channel *ch)
{
	const struct family *fam = ch->family;
	struct event ev;
	enum verdict v;
	const char *claim, *why;

	if (!family_returns(fam)) {
		ret_not_recorded(r, RET_INVALID, "the family's returns are not verified");
		return;
	}
	memset(&ev, 0, sizeof(ev));
	if ((v = fam->verify_return(ch, &r->params, time(NULL), &ev)) != VERDICT_OK) {
		/* The payer's claim, when it could be an order id at all. */
		claim = fam->return_order_field != NULL
		    ? params_value(&r->params, fam->return_order_field)
		    : NULL;
		if (claim != NULL && family_canonical_id(claim) && strlen(claim) <= 128 &&
		    (r->out_trade_no = strdup(claim)) == NULL)
			why = "out of memory";
		else
			why = verdict_str(v);
		/* A failing crypto library says nothing about the return; a
		 * signed timestamp too old (epay RSA, checked after the
		 * signature) is a genuine return of a slow payer. Neither is
		 * recorded, neither is called forged. */
		ret_not_recorded(r,
		    v == VERDICT_CRYPTO || v == VERDICT_STALE ? RET_PENDING : RET_INVALID, "%s",
		    why);
		return;
	}
	memcpy(r->event_id, ev.id, sizeof(r->event_id));
	r->amount_fen = ev.amount_fen;
	r->received_ms = now_ms();
	if ((r->trade_no = strdup(ev.trade_no)) == NULL ||
	    (r->out_trade_no = strdup(ev.out_trade_no)) == NULL) {
		free(r->out_trade_no);
		r->out_trade_no = NULL;
		ret_not_recorded(r, RET_PENDING, "out of memory");
		return;
	}
	/* Test payments are made by payrelayctl send-test through /notify only. */
	if (testcb_is_test_id(ev.trade_no)) {
		ret_not_recorded(r, RET_INVALID, "a test trade id");
		return;
	}
	/* Only payments are recorded from a return; the notify tells the rest. */
	if (ev.type != EVENT_PAID) {
		ret_not_recorded(r, RET_PENDING, "status \"%.32s\" is not paid", ev.status);
		return;
	}
	if (ch->confirm) {
		if (confirm_start(r->env->confirmer, ch, r->trade_no, r->out_trade_no,
			r->amount_fen, ret_confirmed, r, &why) == NULL)
			ret_not_recorded(r, RET_PENDING, "not confirmed: %s", why);
		return;
	}
	/* A family whose signature cannot be made unambiguous (SPEC §2.5):
	 * with confirm = off its notify may be trusted, at the operator's
	 * word, but a return, which every payer holds, never is. */
	if (fam->caps & FAMILY_CONFIRM_DEFAULT) {
		ret_not_recorded(r, RET_PENDING, "confirm = off: not recorded from a return");
		return;
	}
	ev.source = SOURCE_RETURN;
	ev.received_ms = r->received_ms;
	ret_record(r, ch, &ev);
}

void
returns_request(struct env *env, struct evhttp_request *req, struct conn *conn, const char *rest)
{
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const struct channel *ch;
	struct ret *r;
	char channel[66];
	const char *why;
	int status; /* the answer a notify would get: a return is redirected */
	size_t n = strlen(rest);

	if (n > 0 && rest[n - 1] == '/')
		n--; /* tolerate /return/NAME/ */
	if (n > 0 && n < sizeof(channel)) {
		memcpy(channel, rest, n);
		channel[n] = '\0';
	} else {
		channel[0] = '\0';
	}
	ch = config_name_valid(channel) ? config_channel(env->cfg, channel) : NULL;
	if (ch == NULL) {
		ret_count(env, NULL, "other");
		ret_page(req, 404, "Not Found", "Not found.");
		return;
	}
	if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_POST) {
		ret_count(env, ch->name, "other");
		ret_page(req, 405, "Method Not Allowed", "Method not allowed.");
		return;
	}
	if (env->stopping) {
		ret_count(env, ch->name, "other");
		ret_page(req, 503, "Service Unavailable", "Please try again.");
		return;
	}
	/* Checked first: without the secret no answer could be trusted, so
	 * nothing is verified or recorded either. */
	if (env->cfg->return_secret == NULL) {
		if (ret_may_warn())
			log_warnx("return refused: no [daemon] return_secret (or _file) is set",
			    "channel=%s", ch->name);
		ret_count(env, ch->name, "disabled");
		ret_page(req, 503, "Service Unavailable", "Payment returns are not configured.");
		return;
	}
	/* allow_from is not asked: a return comes from the payer's browser,
	 * anywhere, never from the gateway. */
	if (conn == NULL || (r = calloc(1, sizeof(*r))) == NULL) {
		ret_count(env, ch->name, "other");
		ret_page(req, 503, "Service Unavailable", "Please try again.");
		return;
	}
	r->env = env;
	r->req = req;
	r->conn = conn;
	params_init(&r->params);
	/* Channel names are at most 64 bytes (config_name_valid). */
	snprintf(r->channel, sizeof(r->channel), "%s", ch->name);
	conn_watch(conn, ret_conn_closed, r);
	env->returning++;
	/* read as /notify reads them: a return is verified as its notify is */
	if ((why = conns_request_params(req, &r->params, &status)) != NULL) {
		ret_not_recorded(r, RET_INVALID, "%s", why);
		return;
	}
	ret_verify(r, ch);
}
