#include "httpc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "log.h"

/* Easy handles kept for reuse, at most: about the webhooks' max_in_flight
 * together; beyond it a finished handle is freed. */
#define HTTPC_SPARE_MAX 64

struct httpc {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	char *user_agent;
	size_t ncalls;
	LIST_HEAD(, httpc_call) calls; /* every running call, for httpc_free */
	/* Easy handles of finished calls, reset for the next (curl_easy_reset
	 * keeps their buffers; connections stay in the multi handle's pool):
	 * a webhook attempt costs no curl_easy_init once warm. */
	CURL *spare[HTTPC_SPARE_MAX];
	size_t nspare;
};

struct httpc_call {
	struct httpc *h;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	struct sbuf resp;
	size_t max_body;
	bool abort_over_max;
	bool too_large; /* stopped at max_body */
	long retry_after;
	httpc_done_cb *cb;
	void *arg;
	char errbuf[CURL_ERROR_SIZE];
	LIST_ENTRY(httpc_call) link;
};

/* One per socket libcurl asks us to watch. */
struct httpc_sock {
	struct httpc *h;
	curl_socket_t fd;
	struct event *ev;
};

/* A spare easy handle, or a new one. */
static CURL *
httpc_easy_get(struct httpc *h)
{
	if (h->nspare > 0)
		return h->spare[--h->nspare];
	return curl_easy_init();
}

/* Done with e: reset and kept, or freed. */
static void
httpc_easy_put(struct httpc *h, CURL *e)
{
	if (e == NULL)
		return;
	if (h->nspare < HTTPC_SPARE_MAX) {
		curl_easy_reset(e);
		h->spare[h->nspare++] = e;
	} else
		curl_easy_cleanup(e);
}

static void
httpc_call_free(struct httpc_call *c)
{
	struct httpc *h = c->h;

	LIST_REMOVE(c, link);
	h->ncalls--;
	curl_multi_remove_handle(h->multi, c->easy);
	httpc_easy_put(h, c->easy);
	curl_slist_free_all(c->headers);
	free(c->body);
	sbuf_free(&c->resp);
	free(c);
}

/* Drains finished transfers. Runs only from our own event callbacks, so
 * callers' callbacks may start or cancel calls freely. */
static void
httpc_check_done(struct httpc *h)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		struct httpc_call *c = NULL;
		struct httpc_result r;
		curl_off_t us = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
		memset(&r, 0, sizeof(r));
		r.curl_code = (int)msg->data.result;
		if (msg->data.result == CURLE_OK)
			curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r.status);
		else if (c->too_large || msg->data.result == CURLE_FILESIZE_EXCEEDED)
			r.error = HTTPC_TOO_LARGE;
		else
			r.error =
			    c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(msg->data.result);
		curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME_T, &us);
		r.elapsed_ms = (long)(us / 1000);
		r.retry_after = c->retry_after;
		r.body = c->resp.p != NULL ? c->resp.p : "";
		r.body_len = c->resp.len;
		c->cb(c->arg, &r);
		httpc_call_free(c);
	}
}

static void
httpc_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct httpc_sock *s = arg;
	struct httpc *h = s->h;
	int flags = 0, running;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	/* `s` may be freed inside (CURL_POLL_REMOVE): do not touch it after. */
	curl_multi_socket_action(h->multi, fd, flags, &running);
	httpc_check_done(h);
}

static void
httpc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *h = arg;
	int running;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	httpc_check_done(h);
}

/* CURLMOPT_TIMERFUNCTION: one timer; -1 deletes it. */
static int
httpc_timer_fn(CURLM *multi, long timeout_ms, void *arg)
{
	struct httpc *h = arg;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(h->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(h->timer, &tv);
	return 0;
}

/* CURLMOPT_SOCKETFUNCTION: one persistent event per socket. */
static int
httpc_socket_fn(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
	struct httpc *h = arg;
	struct httpc_sock *s = sockp;
	short kind = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			event_free(s->ev);
			free(s);
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return -1;
		s->h = h;
		s->fd = fd;
		curl_multi_assign(h->multi, fd, s);
	} else {
		event_free(s->ev);
	}
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if ((s->ev = event_new(h->base, fd, kind, httpc_event_cb, s)) == NULL ||
	    event_add(s->ev, NULL) == -1)
		return -1;
	return 0;
}

static size_t
httpc_write_fn(char *data, size_t size, size_t n, void *arg)
{
	struct httpc_call *c = arg;
	size_t len = size * n, room;

	room = c->resp.len < c->max_body ? c->max_body - c->resp.len : 0;
	if (c->abort_over_max && len > room) {
		/* A short count stops the transfer (CURLE_WRITE_ERROR). */
		c->too_large = true;
		return 0;
	}
	if (room > 0 && sbuf_add(&c->resp, data, len < room ? len : room) == -1)
		return 0; /* out of memory: fails the transfer */
	return len;
}

/* Keeps Retry-After (delay-seconds form; an HTTP-date counts as absent). */
static size_t
httpc_header_fn(char *data, size_t size, size_t n, void *arg)
{
	static const char name[] = "retry-after:";
	struct httpc_call *c = arg;
	size_t len = size * n, i = sizeof(name) - 1;
	long v = 0;

	if (len > i && strncasecmp(data, name, i) == 0) {
		while (i < len && (data[i] == ' ' || data[i] == '\t'))
			i++;
		if (i < len && data[i] >= '0' && data[i] <= '9') {
			for (; i < len && data[i] >= '0' && data[i] <= '9' && v < 1000000000; i++)
				v = v * 10 + (data[i] - '0');
			c->retry_after = v;
		}
	}
	return len;
}

struct httpc *
httpc_new(struct event_base *base, const char *user_agent)
{
	struct httpc *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	LIST_INIT(&h->calls);
	h->base = base;
	h->user_agent = xstrdup(user_agent);
	h->multi = curl_multi_init();
	h->timer = evtimer_new(base, httpc_timer_cb, h);
	if (h->user_agent == NULL || h->multi == NULL || h->timer == NULL) {
		httpc_free(h);
		return NULL;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, httpc_socket_fn);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, httpc_timer_fn);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	/* Keep-alive connections to every receiver and gateway. */
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 256L);
	return h;
}

void
httpc_free(struct httpc *h)
{
	if (h == NULL)
		return;
	while (!LIST_EMPTY(&h->calls))
		httpc_call_free(LIST_FIRST(&h->calls));
	/* curl_multi_cleanup closes sockets through the socket callback,
	 * which frees our events: before event_base_free. */
	if (h->multi != NULL)
		curl_multi_cleanup(h->multi);
	while (h->nspare > 0)
		curl_easy_cleanup(h->spare[--h->nspare]);
	if (h->timer != NULL)
		event_free(h->timer);
	free(h->user_agent);
	free(h);
}

size_t
httpc_running(const struct httpc *h)
{
	return h->ncalls;
}

struct httpc_call *
httpc_start_gateway(struct httpc *h, const struct poll_query *q, long timeout_ms, httpc_done_cb *cb,
    void *arg)
{
	static const char *const form_hdr[] = { "Content-Type: application/x-www-form-urlencoded",
		NULL };
	struct httpc_request rq;

	memset(&rq, 0, sizeof(rq));
	rq.method = q->method;
	rq.url = q->url;
	rq.headers = q->body != NULL ? form_hdr : NULL;
	rq.body = q->body;
	rq.body_len = q->body_len;
	rq.timeout_ms = timeout_ms;
	rq.abort_over_max = true;
	return httpc_start(h, &rq, cb, arg);
}

struct httpc_call *
httpc_start(struct httpc *h, const struct httpc_request *rq, httpc_done_cb *cb, void *arg)
{
	struct httpc_call *c = calloc(1, sizeof(*c));
	const char *const *hd;
	CURL *e;

	if (c == NULL)
		return NULL;
	c->h = h;
	c->cb = cb;
	c->arg = arg;
	c->retry_after = -1;
	c->max_body =
	    rq->max_body > 0 && rq->max_body < HTTPC_MAX_BODY ? rq->max_body : HTTPC_MAX_BODY;
	c->abort_over_max = rq->abort_over_max;
	sbuf_init(&c->resp);
	if ((c->easy = e = httpc_easy_get(h)) == NULL)
		goto fail;
	for (hd = rq->headers; hd != NULL && *hd != NULL; hd++) {
		struct curl_slist *n = curl_slist_append(c->headers, *hd);

		if (n == NULL)
			goto fail;
		c->headers = n;
	}
	/* No "Expect: 100-continue" round trip for our small bodies. */
	if (strcmp(rq->method, "POST") == 0) {
		struct curl_slist *n = curl_slist_append(c->headers, "Expect:");

		if (n == NULL)
			goto fail;
		c->headers = n;
		if ((c->body = malloc(rq->body_len + 1)) == NULL)
			goto fail;
		memcpy(c->body, rq->body, rq->body_len);
		c->body[rq->body_len] = '\0';
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
	}
	curl_easy_setopt(e, CURLOPT_URL, rq->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
	curl_easy_setopt(e, CURLOPT_PRIVATE, c);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, httpc_write_fn);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, httpc_header_fn);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    rq->timeout_ms < 10000 ? rq->timeout_ms : 10000L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	/* A Content-Length over the cap fails before the body is read. */
	if (c->abort_over_max)
		curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body);
	if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
		goto fail;
	LIST_INSERT_HEAD(&h->calls, c, link);
	h->ncalls++;
	return c;
fail:
	httpc_easy_put(h, c->easy);
	curl_slist_free_all(c->headers);
	free(c->body);
	free(c);
	return NULL;
}

void
httpc_cancel(struct httpc_call *c)
{
	if (c != NULL)
		httpc_call_free(c);
}
