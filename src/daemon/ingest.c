#include "ingest.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "backoff.h"
#include "confirm.h"
#include "config.h"
#include "conns.h"
#include "daemon.h"
#include "event.h"
#include "family.h"
#include "form.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "returns.h"
#include "store.h"
#include "testcb.h"

#define NOTIFY_PREFIX "/notify/"
/* Refusals are logged at most this many times a second; the rest are counted. */
#define REFUSAL_LOGS_PER_SEC 20
/* How long an order registered by an unconfirmed callback is polled: the
 * admin API's default expires_in. */
#define CONFIRM_REGISTER_MS (86400 * 1000LL)

/* A test callback handed out by POST /v1/channels/{ch}/test (payrelayctl
 * send-test). Only a callback whose trade id is one of these is recorded
 * as a test: the flag is the daemon's, never the request's. */
#define TESTCB_SLOTS 16
struct testcb_slot {
	char channel[65];
	char trade_no[TESTCB_ID_LEN + 1];
	int64_t until_ms; /* 0: free */
};

/* The public listener, owned by payrelayd.c (env->ingest). */
struct ingest {
	struct env *env;
	struct evhttp *http;
	struct conns *conns; /* the listener and its connections */
	size_t pending;      /* callbacks waiting for Redis or a confirmation */
	uint64_t results[INGEST_NRESULTS];
	struct testcb_slot testcbs[TESTCB_SLOTS];
	/* Refusal log lines of the current second, and those left out. */
	struct {
		time_t window;
		unsigned logged, suppressed;
		struct event *flush; /* logs the count left out once its second is over */
	} refusals;
};

/* A callback waiting for Redis, or for its confirmation first. Owns copies
 * of everything it logs, since a reload may free the channel meanwhile. */
struct pending {
	struct ingest *in;
	struct evhttp_request *req; /* NULL once the connection is gone */
	struct conn *conn;          /* watched while this is pending */
	bool replying;              /* the answer is being written */
	const struct family *family;
	char channel[65];
	char event_id[EVENT_ID_LEN + 1];
	char *trade_no;
	char *out_trade_no;
	long long amount_fen;
	struct timespec started; /* when the request was handed to us */
	/* While its confirmation runs (SPEC §2.5): the callback's parameters,
	 * owned, from which the event is built again once the gateway
	 * answered (a reload may have freed the channel it borrowed from). */
	struct params params;
	int64_t received_ms;
};

static void
ingest_reply(struct evhttp_request *req, int code, const char *reason, const char *body)
{
	struct evbuffer *buf = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; charset=utf-8");
	if (buf != NULL)
		evbuffer_add(buf, body, strlen(body));
	evhttp_send_reply(req, code, reason, buf);
	if (buf != NULL)
		evbuffer_free(buf);
}

/* evhttp leaves an answer in the connection's output buffer for EV_WRITE,
 * in the next loop turn. Written now, an answer made when its Redis reply
 * arrived leaves in that same turn; what the socket does not take the
 * bufferevent still writes later, and evhttp's completion callback runs
 * then as before. `evcon` was taken before evhttp_send_reply (which frees
 * a request whose connection is gone: then it is NULL). */
static void
ingest_write_now(struct env *env, struct evhttp_connection *evcon)
{
	struct bufferevent *bev;
	struct evbuffer *out;
	evutil_socket_t fd;

	if (evcon == NULL || (bev = evhttp_connection_get_bufferevent(evcon)) == NULL ||
	    (fd = bufferevent_getfd(bev)) < 0)
		return;
	out = bufferevent_get_output(bev);
	if (evbuffer_get_length(out) > 0)
		(void)evbuffer_write(out, fd); /* an error shows at the bufferevent's write */
	metrics_inc(env->metrics, "payrelay_answers_written_total", "when",
	    evbuffer_get_length(out) == 0 ? "at_once" : "later", NULL, NULL);
}

/* Counts a callback's fate; `channel` is a configured name or NULL (an
 * unknown one: never a label an attacker could choose). */
static void
ingest_count(struct ingest *in, const char *channel, enum ingest_result res)
{
	static const char *const names[INGEST_NRESULTS] = {
		[INGEST_RECORDED] = "recorded",
		[INGEST_DUPLICATE] = "duplicate",
		[INGEST_REFUSED] = "refused",
		[INGEST_FORBIDDEN] = "forbidden",
		[INGEST_NOT_FOUND] = "not_found",
		[INGEST_UNAVAILABLE] = "unavailable",
		[INGEST_OTHER] = "other",
	};

	in->results[res]++;
	metrics_inc(in->env->metrics, "payrelay_callbacks_total", "channel",
	    channel != NULL ? channel : "unknown", "result", names[res]);
}

/* Every refusal says exactly "fail": gateways search the reply for
 * "success" or "ok", so an explanation could read as an ack. */
static void
ingest_fail(struct ingest *in, struct evhttp_request *req, const char *channel, int code,
    enum ingest_result res)
{
	static const struct {
		int code;
		const char *reason;
	} reasons[] = {
		{ 400, "Bad Request" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" },
		{ 415, "Unsupported Media Type" },
		{ 503, "Service Unavailable" },
	};
	const char *reason = "Error";
	size_t i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].code == code)
			reason = reasons[i].reason;
	ingest_count(in, channel, res);
	ingest_reply(req, code, reason, "fail");
}

/* The client's address (SPEC §3.1: behind a trusted proxy, the one it
 * names), or "-". */
static void
peer_string(const struct ingest *in, struct evhttp_request *req, char *out, size_t n)
{
	conns_client_string(in->conns, req, out, n);
}

static void
refusals_flush(evutil_socket_t fd, short what, void *arg)
{
	struct ingest *in = arg;

	(void)fd;
	(void)what;
	if (in->refusals.suppressed > 0)
		log_warnx("callback refusals not logged", "count=%u", in->refusals.suppressed);
	in->refusals.suppressed = 0;
}

/* Rate-limited warning for a refused callback; `req` NULL once its
 * connection is gone. `p` (NULL when not decoded) is logged by its trade
 * id, the field `fam` names. */
static void
ingest_log_refusal(struct ingest *in, struct evhttp_request *req, const char *channel,
    const char *why, const struct family *fam, const struct params *p)
{
	time_t now = time(NULL);
	char peer[64];
	const char *trade = NULL;

	if (now != in->refusals.window) {
		refusals_flush(-1, 0, in);
		in->refusals.window = now;
		in->refusals.logged = 0;
	}
	if (++in->refusals.logged > REFUSAL_LOGS_PER_SEC) {
		/* Counted, and logged after the second even if none follows. */
		if (in->refusals.suppressed++ == 0 && in->refusals.flush != NULL) {
			struct timeval tv = { 1, 0 };

			evtimer_add(in->refusals.flush, &tv);
		}
		return;
	}
	if (p != NULL && fam != NULL && fam->trade_id_field != NULL)
		trade = params_value(p, fam->trade_id_field);
	peer_string(in, req, peer, sizeof(peer));
	log_warnx("callback refused", "channel=%.64s reason=\"%s\" peer=%s trade_no=\"%.64s\"",
	    channel, why, peer, trade != NULL ? trade : "");
}

static void
pending_free(struct pending *pd)
{
	if (pd == NULL)
		return;
	free(pd->trade_no);
	free(pd->out_trade_no);
	params_free(&pd->params);
	free(pd);
}

/* The callback is over for us: answered (or its connection gone). */
static void
pending_done(struct pending *pd)
{
	struct ingest *in = pd->in;

	pending_free(pd);
	in->pending--;
}

static void
ingest_conn_closed(void *arg)
{
	struct pending *pd = arg;

	if (pd->replying) {
		/* The answer could not be written; the gateway will retry. */
		log_warnx("callback answer not delivered, connection closed", "channel=%s event=%s",
		    pd->channel, pd->event_id);
		pending_done(pd);
		return;
	}
	pd->req = NULL;
}

/* The answer was written out: only now may a shutdown close the connection. */
static void
ingest_reply_sent(struct evhttp_request *req, void *arg)
{
	struct pending *pd = arg;

	(void)req;
	conn_watch(pd->conn, NULL, NULL);
	pending_done(pd);
}

static void
ingest_recorded(void *arg, enum store_result r, const char *type)
{
	struct pending *pd = arg;
	struct ingest *in = pd->in;
	struct evhttp_request *req = pd->req;
	struct evhttp_connection *evcon;

	switch (r) {
	case STORE_NEW:
		ingest_count(in, pd->channel, INGEST_RECORDED);
		if (strcmp(type, "order.amount_mismatch") == 0)
			log_warnx("callback recorded with amount mismatch",
			    "channel=%s event=%s type=%s trade_no=\"%.64s\" out_trade_no=\"%.64s\" "
			    "amount_fen=%lld",
			    pd->channel, pd->event_id, type, pd->trade_no, pd->out_trade_no,
			    pd->amount_fen);
		else
			log_info("callback recorded",
			    "channel=%s event=%s type=%s trade_no=\"%.64s\" out_trade_no=\"%.64s\" "
			    "amount_fen=%lld",
			    pd->channel, pd->event_id, type, pd->trade_no, pd->out_trade_no,
			    pd->amount_fen);
		break;
	case STORE_DUP:
		ingest_count(in, pd->channel, INGEST_DUPLICATE);
		log_info("callback duplicate", "channel=%s event=%s trade_no=\"%.64s\"",
		    pd->channel, pd->event_id, pd->trade_no);
		break;
	case STORE_ERROR:
	case STORE_TIMEOUT:
		log_warnx("callback not recorded, answered 503", "channel=%s event=%s reason=%s",
		    pd->channel, pd->event_id,
		    r == STORE_TIMEOUT ? "redis timeout" : "redis error");
		break;
	case STORE_UNREPLICATED:
		log_warnx("callback not recorded, answered 503", "channel=%s event=%s reason=%s",
		    pd->channel, pd->event_id, "redis replicas");
		break;
	}
	if (req == NULL) {
		log_warnx("callback connection closed before the answer", "channel=%s event=%s",
		    pd->channel, pd->event_id);
		pending_done(pd);
		return;
	}
	/* The connection's close callback still points at pd, and fires
	 * instead of the completion one if the answer cannot be written. */
	pd->replying = true;
	evcon = evhttp_request_get_connection(req);
	evhttp_request_set_on_complete_cb(req, ingest_reply_sent, pd);
	if (r == STORE_NEW || r == STORE_DUP) {
		struct timespec now;

		clock_gettime(CLOCK_MONOTONIC, &now);
		metrics_observe_ack(in->env->metrics,
		    (double)(now.tv_sec - pd->started.tv_sec) +
			(double)(now.tv_nsec - pd->started.tv_nsec) / 1e9);
		ingest_reply(req, 200, "OK", pd->family->ack_body);
	} else {
		ingest_fail(in, req, pd->channel, 503, INGEST_UNAVAILABLE);
	}
	ingest_write_now(in->env, evcon); /* pd may be gone: the answer was sent */
}

/* A callback that will be answered later: it keeps copies of what it logs
 * (a reload may free the channel meanwhile). NULL when out of memory or
 * without a watched connection, whose answer could outlive it. */
static struct pending *
pending_new(struct ingest *in, struct evhttp_request *req, struct conn *conn,
    const struct channel *ch, const struct event *ev, const struct timespec *t0)
{
	struct pending *pd;

	if (conn == NULL || (pd = calloc(1, sizeof(*pd))) == NULL)
		return NULL;
	pd->conn = conn;
	pd->in = in;
	pd->req = req;
	pd->family = ch->family;
	/* Channel names are at most 64 bytes (config_name_valid). */
	strncpy(pd->channel, ch->name, sizeof(pd->channel) - 1);
	memcpy(pd->event_id, ev->id, sizeof(pd->event_id));
	pd->trade_no = strdup(ev->trade_no);
	pd->out_trade_no = strdup(ev->out_trade_no);
	pd->amount_fen = ev->amount_fen;
	pd->started = *t0;
	pd->received_ms = ev->received_ms;
	if (pd->trade_no == NULL || pd->out_trade_no == NULL) {
		pending_free(pd);
		return NULL;
	}
	return pd;
}

/* Hands the verified callback to the record step. Returns the HTTP code to
 * fail with, or 0 (answered later, from ingest_recorded). */
static int
ingest_record(struct ingest *in, struct evhttp_request *req, struct conn *conn,
    const struct channel *ch, struct event *ev, const struct timespec *t0)
{
	struct pending *pd;

	if ((pd = pending_new(in, req, conn, ch, ev, t0)) == NULL)
		return 503;
	if (record_event(in->env, ch, ev, ingest_recorded, pd) == -1) {
		log_warnx("callback not recorded, answered 503",
		    "channel=%s event=%s reason=\"redis not ready\"", ch->name, ev->id);
		pending_free(pd);
		return 503;
	}
	/* A server connection does not read while its request is unanswered,
	 * so only a shutdown frees it under us; the close callback says so. */
	conn_watch(conn, ingest_conn_closed, pd);
	in->pending++;
	return 0;
}

/* --- confirmation by query (SPEC §2.5) ----------------------------------- */

/* Answers a pending callback `code` "fail", counted as `res`; only counts
 * it when its connection is gone. */
static void
pending_fail(struct pending *pd, int code, enum ingest_result res)
{
	struct evhttp_request *req = pd->req;

	if (req == NULL) {
		ingest_count(pd->in, pd->channel, res);
		pending_done(pd);
		return;
	}
	/* As in ingest_recorded: over once the answer is written. */
	pd->replying = true;
	evhttp_request_set_on_complete_cb(req, ingest_reply_sent, pd);
	ingest_fail(pd->in, req, pd->channel, code, res);
}

static void
confirm_registered(void *arg, enum store_order_reg what, const char *state, int64_t registered_fen)
{
	struct pending *pd = arg;

	if (what == STORE_ORDER_FAILED)
		log_warnx("unconfirmed callback's order not registered for polling",
		    "channel=%s out_trade_no=\"%.64s\" reason=\"redis failed\"", pd->channel,
		    pd->out_trade_no);
	else if (what == STORE_ORDER_CREATED)
		log_info("order registered for polling by an unconfirmed callback",
		    "channel=%s out_trade_no=\"%.64s\"", pd->channel, pd->out_trade_no);
	pending_fail(pd, 503, INGEST_UNAVAILABLE);
}

/* No usable answer: 503, so that the gateway retries, and the order is
 * registered for polling, so that the payment is found even if it never
 * does. Without an amount: this callback's is not confirmed, and a wrong
 * one would turn the real payment into order.amount_mismatch. */
static void
confirm_unavailable(struct pending *pd, const char *why)
{
	struct env *env = pd->in->env;
	const struct channel *ch = config_channel(env->cfg, pd->channel);
	int64_t now = now_ms();
	char reason[256];

	snprintf(reason, sizeof(reason), "not confirmed, answered 503: %s", why);
	ingest_log_refusal(pd->in, pd->req, pd->channel, reason, pd->family, &pd->params);
	if (ch == NULL || ch->api_base == NULL) {
		pending_fail(pd, 503, INGEST_UNAVAILABLE);
		return;
	}
	if (store_order_register(env->store, ch->name, pd->out_trade_no, -1,
		now + CONFIRM_REGISTER_MS,
		backoff_first_poll_ms(now, ch->poll_after, now + CONFIRM_REGISTER_MS),
		confirm_registered, pd) == -1) {
		log_warnx("unconfirmed callback's order not registered for polling",
		    "channel=%s out_trade_no=\"%.64s\" reason=\"redis not ready\"", pd->channel,
		    pd->out_trade_no);
		pending_fail(pd, 503, INGEST_UNAVAILABLE);
	}
}

static void
ingest_confirmed(void *arg, enum confirm_outcome o, const char *detail)
{
	struct pending *pd = arg;
	struct env *env = pd->in->env;
	const struct channel *ch;
	struct event ev;
	char reason[256];

	if (o == CONFIRM_REFUSED) {
		snprintf(reason, sizeof(reason), "not confirmed by query: %s", detail);
		ingest_log_refusal(pd->in, pd->req, pd->channel, reason, pd->family, &pd->params);
		pending_fail(pd, 400, INGEST_REFUSED);
		return;
	}
	if (o != CONFIRM_CONFIRMED) {
		confirm_unavailable(pd, detail);
		return;
	}
	/* The event borrows from the channel, which a reload may have
	 * replaced: built again from the current one, and still the same. */
	ch = config_channel(env->cfg, pd->channel);
	memset(&ev, 0, sizeof(ev));
	if (ch == NULL || ch->family->verify(ch, &pd->params, time(NULL), &ev) != VERDICT_OK ||
	    strcmp(ev.id, pd->event_id) != 0) {
		confirm_unavailable(pd, "the channel was changed by a reload");
		return;
	}
	ev.source = SOURCE_CALLBACK;
	ev.received_ms = pd->received_ms;
	ev.confirmed_by = "query";
	log_debug("callback confirmed by query", "channel=%s event=%s", pd->channel, pd->event_id);
	if (record_event(env, ch, &ev, ingest_recorded, pd) == -1) {
		log_warnx("callback not recorded, answered 503",
		    "channel=%s event=%s reason=\"redis not ready\"", pd->channel, pd->event_id);
		pending_fail(pd, 503, INGEST_UNAVAILABLE);
	}
}

/* A paid callback of a channel with confirm = query is recorded only once
 * the gateway's query API agrees (SPEC §2.5). Takes over the parameters
 * `p` (left empty): the query outlives this request's handler. Returns the
 * HTTP code to fail with, or 0 (answered later). */
static int
ingest_confirm(struct ingest *in, struct evhttp_request *req, struct conn *conn,
    const struct channel *ch, const struct event *ev, struct params *p, const struct timespec *t0)
{
	struct pending *pd;
	const char *why;

	if ((pd = pending_new(in, req, conn, ch, ev, t0)) == NULL)
		return 503;
	pd->params = *p;
	params_init(p);
	conn_watch(conn, ingest_conn_closed, pd);
	in->pending++;
	if (confirm_start(in->env->confirmer, ch, pd->trade_no, pd->out_trade_no, pd->amount_fen,
		ingest_confirmed, pd, &why) == NULL)
		confirm_unavailable(pd, why);
	return 0;
}

int
ingest_test_expect(struct ingest *in, const char *channel, const char *trade_no)
{
	int64_t now = now_ms();
	size_t i;

	for (i = 0; i < TESTCB_SLOTS; i++) {
		struct testcb_slot *t = &in->testcbs[i];

		if (t->until_ms > now)
			continue;
		snprintf(t->channel, sizeof(t->channel), "%s", channel);
		snprintf(t->trade_no, sizeof(t->trade_no), "%s", trade_no);
		t->until_ms = now + TESTCB_TTL_MS;
		return 0;
	}
	return -1;
}

/* A test trade id this daemon handed out for `channel`, not expired. Kept
 * until it expires, so that a test answered 503 can be sent again. */
static bool
ingest_test_known(const struct ingest *in, const char *channel, const char *trade_no)
{
	int64_t now = now_ms();
	size_t i;

	for (i = 0; i < TESTCB_SLOTS; i++) {
		const struct testcb_slot *t = &in->testcbs[i];

		if (t->until_ms > now && strcmp(t->channel, channel) == 0 &&
		    strcmp(t->trade_no, trade_no) == 0)
			return true;
	}
	return false;
}

static void
ingest_notify(struct ingest *in, struct evhttp_request *req, struct conn *conn, const char *channel)
{
	struct env *env = in->env;
	const struct channel *ch = config_channel(env->cfg, channel);
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	struct sockaddr_storage peer;
	struct params p;
	struct event ev;
	enum verdict v;
	const char *why;
	int code, status;
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	params_init(&p);
	if (ch == NULL) {
		ingest_log_refusal(in, req, "-", "unknown channel", NULL, NULL);
		ingest_fail(in, req, NULL, 404, INGEST_NOT_FOUND);
		goto out;
	}
	if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_POST) {
		ingest_log_refusal(in, req, ch->name, "method not allowed", NULL, NULL);
		ingest_fail(in, req, ch->name, 405, INGEST_OTHER);
		goto out;
	}
	/* The client's address: behind a trusted proxy, the one it names. */
	if (!conns_client(in->conns, req, &peer) ||
	    !channel_allows(ch, (const struct sockaddr *)&peer)) {
		ingest_log_refusal(in, req, ch->name, "source address not in allow_from", NULL,
		    NULL);
		ingest_fail(in, req, ch->name, 403, INGEST_FORBIDDEN);
		goto out;
	}
	if ((why = conns_request_params(req, &p, &status)) != NULL) {
		ingest_log_refusal(in, req, ch->name, why, NULL, NULL);
		ingest_fail(in, req, ch->name, status,
		    status == 400 ? INGEST_REFUSED : INGEST_OTHER);
		goto out;
	}
	memset(&ev, 0, sizeof(ev));
	if ((v = ch->family->verify(ch, &p, time(NULL), &ev)) != VERDICT_OK) {
		ingest_log_refusal(in, req, ch->name, verdict_str(v), ch->family, &p);
		metrics_inc(env->metrics, "payrelay_callbacks_refused_total", "channel", ch->name,
		    "reason", verdict_label(v));
		/* A failing crypto library says nothing about the callback:
		 * 503, so the gateway tries again once it is mended. */
		if (v == VERDICT_CRYPTO)
			ingest_fail(in, req, ch->name, 503, INGEST_UNAVAILABLE);
		else
			ingest_fail(in, req, ch->name, 400, INGEST_REFUSED);
		goto out;
	}
	/* A test trade id is recorded only as the test this daemon made (it
	 * skips confirmation: no gateway knows of it); any other use of one,
	 * an old test sent again included, is refused. */
	if (testcb_is_test_id(ev.trade_no)) {
		if (!ingest_test_known(in, ch->name, ev.trade_no)) {
			ingest_log_refusal(in, req, ch->name,
			    "a test trade id this daemon did not hand out, or expired", ch->family,
			    &p);
			ingest_fail(in, req, ch->name, 400, INGEST_REFUSED);
			goto out;
		}
		ev.test = true;
	}
	ev.source = SOURCE_CALLBACK;
	ev.received_ms = now_ms();
	if (ch->confirm && ev.type == EVENT_PAID && !ev.test)
		code = ingest_confirm(in, req, conn, ch, &ev, &p, &t0);
	else
		code = ingest_record(in, req, conn, ch, &ev, &t0);
	if (code != 0)
		ingest_fail(in, req, ch->name, code, INGEST_UNAVAILABLE);
out:
	params_free(&p);
}

static void
ingest_cb(struct evhttp_request *req, void *arg)
{
	struct ingest *in = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	/* Restarts the connection's deadline for its next request. */
	struct conn *conn = conns_request(in->conns, req);
	char channel[66];
	size_t n;

	if (conns_refuse_framing(in->conns, req)) {
		ingest_fail(in, req, NULL, 400, INGEST_REFUSED);
		return;
	}
	/* The payer's browser, not a gateway: returns.c answers it. */
	if (path != NULL && strncmp(path, RETURNS_PREFIX, sizeof(RETURNS_PREFIX) - 1) == 0) {
		returns_request(in->env, req, conn, path + sizeof(RETURNS_PREFIX) - 1);
		return;
	}
	if (in->env->stopping) {
		ingest_fail(in, req, NULL, 503, INGEST_UNAVAILABLE);
		return;
	}
	if (path == NULL || strncmp(path, NOTIFY_PREFIX, sizeof(NOTIFY_PREFIX) - 1) != 0) {
		ingest_fail(in, req, NULL, 404, INGEST_NOT_FOUND);
		return;
	}
	path += sizeof(NOTIFY_PREFIX) - 1;
	n = strlen(path);
	if (n > 0 && path[n - 1] == '/')
		n--; /* tolerate /notify/NAME/ */
	if (n == 0 || n >= sizeof(channel)) {
		ingest_log_refusal(in, req, "-", "unknown channel", NULL, NULL);
		ingest_fail(in, req, NULL, 404, INGEST_NOT_FOUND);
		return;
	}
	memcpy(channel, path, n);
	channel[n] = '\0';
	if (!config_name_valid(channel)) {
		ingest_log_refusal(in, req, "-", "unknown channel", NULL, NULL);
		ingest_fail(in, req, NULL, 404, INGEST_NOT_FOUND);
		return;
	}
	ingest_notify(in, req, conn, channel);
}

/* Descriptors the connections must leave: the fixed reserve, the admin
 * listener's connections, and one per webhook delivery that may be in
 * flight. */
static size_t
ingest_fd_reserve(const struct config *cfg)
{
	size_t n = CONNS_FD_RESERVE + ADMIN_MAX_CONNECTIONS, i;

	for (i = 0; i < cfg->nwebhooks; i++)
		n += (size_t)cfg->webhooks[i].max_in_flight;
	return n;
}

struct ingest *
ingest_new(struct env *env)
{
	const struct netaddr *a = &env->cfg->listen;
	struct ingest *in;

	if (a->is_unix) {
		log_errorx("the public listener must be host:port", "listen=%s", a->path);
		return NULL;
	}
	if ((in = calloc(1, sizeof(*in))) == NULL)
		return NULL;
	in->env = env;
	if ((in->http = evhttp_new(env->base)) == NULL ||
	    (in->refusals.flush = evtimer_new(env->base, refusals_flush, in)) == NULL)
		goto fail;
	evhttp_set_max_body_size(in->http, INGEST_MAX_BODY);
	evhttp_set_max_headers_size(in->http, INGEST_MAX_HEADERS);
	/* conns.c's deadline closes slow and idle connections; libevent's
	 * inactivity timer only backs it up. */
	evhttp_set_timeout(in->http, env->cfg->read_timeout + 1);
	/* Let every method through to answer 405 "fail" ourselves. */
	evhttp_set_allowed_methods(in->http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
		EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
		EVHTTP_REQ_PATCH);
	/* Read the rest of an oversized body so the client sees the 413. */
	evhttp_set_flags(in->http, EVHTTP_SERVER_LINGERING_CLOSE);
	evhttp_set_gencb(in->http, ingest_cb, in);
	in->conns = conns_new(env->base, in->http, env->metrics, CONNS_PUBLIC,
	    (size_t)env->cfg->max_connections, ingest_fd_reserve(env->cfg), env->cfg->read_timeout);
	if (in->conns == NULL || conns_set_proxy(in->conns, env->cfg) == -1 ||
	    conns_listen(in->conns, a->host, a->port) == -1)
		goto fail;
	log_info("listening", "addr=%s port=%u", a->host, (unsigned)a->port);
	return in;
fail:
	ingest_free(in);
	return NULL;
}

void
ingest_stop_accepting(struct ingest *in)
{
	if (in != NULL)
		conns_stop_accepting(in->conns);
}

size_t
ingest_busy(const struct ingest *in)
{
	return in == NULL ? 0 : in->pending;
}

uint64_t
ingest_total(const struct ingest *in, enum ingest_result r)
{
	return in == NULL ? 0 : in->results[r];
}

const struct conns *
ingest_conns(const struct ingest *in)
{
	return in == NULL ? NULL : in->conns;
}

void
ingest_free(struct ingest *in)
{
	if (in == NULL)
		return;
	conns_stop_accepting(in->conns);
	if (in->http != NULL)
		evhttp_free(in->http);
	/* After evhttp_free: closing connections still report to it. */
	conns_free(in->conns);
	if (in->refusals.flush != NULL) {
		refusals_flush(-1, 0, in);
		event_free(in->refusals.flush);
	}
	free(in);
}
