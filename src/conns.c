#include "conns.h"

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "log.h"
#include "metrics.h"

/* After an accept() failure for want of descriptors or memory, the listener
 * rests this long: the pending connection stays in the backlog, and
 * accepting again at once would only spin. */
#define ACCEPT_REST_MS 100

/* Each listener's names in logs and its counters. */
static const struct {
	const char *name;
	const char *timeouts, *paused, *accept_errors;
} listeners[] = {
	[CONNS_PUBLIC] = { "public", "payrelay_http_timeouts_total",
	    "payrelay_http_accept_paused_total", "payrelay_http_accept_errors_total" },
	[CONNS_ADMIN] = { "admin", "payrelay_admin_http_timeouts_total",
	    "payrelay_admin_http_accept_paused_total", "payrelay_admin_http_accept_errors_total" },
};

struct conn {
	struct conns *cs;
	struct evhttp_connection *evcon;
	int fd;
	struct event *deadline;
	void (*gone)(void *);
	void *gone_arg;
	bool held; /* a request is being answered: no deadline */
};

struct conns {
	enum conns_listener which;
	LIST_ENTRY(conns) link;
	struct event_base *base;
	struct evhttp *http;
	struct metrics *metrics;
	struct evhttp_bound_socket *sock;
	struct evconnlistener *lev; /* NULL once not accepting */
	size_t cap;
	size_t open;     /* tracked connections */
	size_t adopting; /* accepted, not yet tracked */
	bool paused;     /* the listener is disabled for the cap or an accept error */
	bool resting;    /* ... for an accept error, until `rest` fires */
	struct timeval timeout;
	struct conn **byfd; /* the tracked connection on each descriptor */
	size_t nbyfd;
	struct bufferevent **fresh; /* created for evhttp, waiting for adoption */
	size_t nfresh, freshcap;
	struct event *adopt; /* activated when `fresh` is not empty */
	struct event *rest;
	time_t cap_warned;
	time_t framing_warned;
};

/* Every listener's conns: evconnlistener hands an accept-error callback
 * the accept callback's argument (evhttp's), not one of ours. */
static LIST_HEAD(, conns) all_conns = LIST_HEAD_INITIALIZER(all_conns);

size_t
conns_open(const struct conns *cs)
{
	return cs->open;
}

size_t
conns_cap(const struct conns *cs)
{
	return cs->cap;
}

/* The listener accepts again if it rests for nothing. */
static void
conns_maybe_resume(struct conns *cs)
{
	if (!cs->paused || cs->resting || cs->lev == NULL || cs->open + cs->adopting >= cs->cap)
		return;
	if (evconnlistener_enable(cs->lev) == 0)
		cs->paused = false;
}

static void
conns_pause(struct conns *cs)
{
	if (cs->paused || cs->lev == NULL)
		return;
	if (evconnlistener_disable(cs->lev) == 0)
		cs->paused = true;
}

static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg;
	struct conns *cs = c->cs;

	(void)evcon;
	if (c->gone != NULL)
		c->gone(c->gone_arg);
	if (c->fd >= 0 && (size_t)c->fd < cs->nbyfd && cs->byfd[c->fd] == c)
		cs->byfd[c->fd] = NULL;
	event_free(c->deadline);
	free(c);
	cs->open--;
	conns_maybe_resume(cs);
}

static void
conn_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->gone != NULL || c->held) {
		/* A request waits for Redis; its timeout will answer it. */
		evtimer_add(c->deadline, &c->cs->timeout);
		return;
	}
	metrics_inc(c->cs->metrics, listeners[c->cs->which].timeouts, NULL, NULL, NULL, NULL);
	log_debug("connection closed, no whole request in time", "fd=%d listener=%s", c->fd,
	    listeners[c->cs->which].name);
	/* Runs conn_closed, which frees c and this very timer (allowed). */
	evhttp_connection_free(c->evcon);
}

/* Starts watching `evcon` on descriptor `fd`. */
static struct conn *
conns_track(struct conns *cs, struct evhttp_connection *evcon, int fd)
{
	struct conn *c;

	if ((size_t)fd >= cs->nbyfd) {
		size_t n = cs->nbyfd == 0 ? 1024 : cs->nbyfd;
		struct conn **v;

		while (n <= (size_t)fd)
			n *= 2;
		if ((v = realloc(cs->byfd, n * sizeof(*v))) == NULL)
			return NULL;
		memset(v + cs->nbyfd, 0, (n - cs->nbyfd) * sizeof(*v));
		cs->byfd = v;
		cs->nbyfd = n;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->cs = cs;
	c->evcon = evcon;
	c->fd = fd;
	if ((c->deadline = evtimer_new(cs->base, conn_deadline, c)) == NULL ||
	    evtimer_add(c->deadline, &cs->timeout) == -1) {
		if (c->deadline != NULL)
			event_free(c->deadline);
		free(c);
		return NULL;
	}
	evhttp_connection_set_closecb(evcon, conn_closed, c);
	cs->byfd[fd] = c;
	cs->open++;
	return c;
}

/* Runs after the accept callback that created the bufferevents in `fresh`,
 * before any of their sockets is read: by now evhttp has made each its
 * connection and set itself as the bufferevent's callback argument. */
static void
conns_adopt(evutil_socket_t unused, short what, void *arg)
{
	struct conns *cs = arg;
	size_t i;

	(void)unused;
	(void)what;
	for (i = 0; i < cs->nfresh; i++) {
		struct bufferevent *bev = cs->fresh[i];
		bufferevent_data_cb readcb = NULL;
		void *cbarg = NULL;
		int fd = bufferevent_getfd(bev);

		bufferevent_getcb(bev, &readcb, NULL, NULL, &cbarg);
		/* A bufferevent evhttp already freed has no callbacks left
		 * (the reference taken in conns_bevcb kept it readable). */
		if (readcb != NULL && cbarg != NULL && fd >= 0 &&
		    evhttp_connection_get_bufferevent(cbarg) == bev &&
		    conns_track(cs, cbarg, fd) == NULL) {
			log_warnx("connection refused, out of memory", "fd=%d", fd);
			evhttp_connection_free(cbarg);
		}
		bufferevent_decref(bev);
		cs->adopting--;
	}
	cs->nfresh = 0;
	conns_maybe_resume(cs);
}

/* evhttp's factory for a new connection's bufferevent: counts it, and stops
 * the listener at the cap (the accept loop checks after each connection). */
static struct bufferevent *
conns_bevcb(struct event_base *base, void *arg)
{
	struct conns *cs = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

	if (bev == NULL)
		return NULL;
	if (cs->nfresh == cs->freshcap) {
		size_t n = cs->freshcap == 0 ? 64 : cs->freshcap * 2;
		struct bufferevent **v = realloc(cs->fresh, n * sizeof(*v));

		if (v == NULL) {
			/* Untracked for now; conns_request adopts it when its
			 * first request comes. */
			return bev;
		}
		cs->fresh = v;
		cs->freshcap = n;
	}
	bufferevent_incref(bev);
	cs->fresh[cs->nfresh++] = bev;
	cs->adopting++;
	event_active(cs->adopt, EV_TIMEOUT, 1);
	if (cs->open + cs->adopting >= cs->cap) {
		time_t now = time(NULL);

		metrics_inc(cs->metrics, listeners[cs->which].paused, NULL, NULL, NULL, NULL);
		if (now != cs->cap_warned) {
			cs->cap_warned = now;
			log_warnx("connection cap reached, new connections wait in the backlog",
			    "max_connections=%zu listener=%s", cs->cap, listeners[cs->which].name);
		}
		conns_pause(cs);
	}
	return bev;
}

static void
conns_rested(evutil_socket_t fd, short what, void *arg)
{
	struct conns *cs = arg;

	(void)fd;
	(void)what;
	cs->resting = false;
	conns_maybe_resume(cs);
}

/* accept() failed for another reason than a retriable one: out of
 * descriptors or memory, mostly. The pending connection stays in the
 * backlog, so accepting again at once would spin: the listener rests. */
static void
conns_accept_error(struct evconnlistener *lev, void *unused)
{
	struct conns *cs;
	int err = errno;
	struct timeval rest = { 0, ACCEPT_REST_MS * 1000 };
	static time_t warned;
	time_t now = time(NULL);

	(void)unused;
	for (cs = LIST_FIRST(&all_conns); cs != NULL && cs->lev != lev; cs = LIST_NEXT(cs, link))
		;
	if (now != warned) {
		warned = now;
		log_warnx("accept failed, listener rests", "error=\"%s\" rest_ms=%d listener=%s",
		    strerror(err), ACCEPT_REST_MS, cs != NULL ? listeners[cs->which].name : "-");
	}
	if (cs == NULL) /* not ours: cannot happen */
		return;
	metrics_inc(cs->metrics, listeners[cs->which].accept_errors, NULL, NULL, NULL, NULL);
	conns_pause(cs);
	cs->resting = true;
	evtimer_add(cs->rest, &rest);
}

/* Raises the soft open-file limit to the hard one; returns the soft limit. */
static rlim_t
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			rl.rlim_cur = was;
	}
	return rl.rlim_cur;
}

struct conns *
conns_new(struct event_base *base, struct evhttp *http, struct metrics *m,
    enum conns_listener which, size_t cap, size_t reserve, int read_timeout)
{
	struct conns *cs = calloc(1, sizeof(*cs));
	rlim_t limit = raise_nofile();

	if (cs == NULL)
		return NULL;
	if (limit != RLIM_INFINITY && limit < cap + reserve + 16) {
		size_t fit = limit > reserve + 16 + 16 ? (size_t)limit - reserve - 16 : 16;

		log_warnx("max_connections lowered to fit the open-file limit",
		    "max_connections=%zu now=%zu nofile=%llu reserve=%zu listener=%s", cap, fit,
		    (unsigned long long)limit, reserve, listeners[which].name);
		cap = fit;
	}
	cs->which = which;
	LIST_INSERT_HEAD(&all_conns, cs, link);
	cs->base = base;
	cs->http = http;
	cs->metrics = m;
	cs->cap = cap;
	cs->timeout.tv_sec = read_timeout;
	cs->adopt = event_new(base, -1, 0, conns_adopt, cs);
	cs->rest = evtimer_new(base, conns_rested, cs);
	if (cs->adopt == NULL || cs->rest == NULL) {
		conns_free(cs);
		return NULL;
	}
	/* Activated from the accept callback, so it runs in the same loop
	 * pass: before the new sockets can be polled for reading. */
	evhttp_set_bevcb(http, conns_bevcb, cs);
	return cs;
}

int
conns_listen(struct conns *cs, const char *host, uint16_t port)
{
	struct addrinfo hints = { 0 }, *ai = NULL;
	char service[8];
	int fd = -1, one = 1, rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%u", (unsigned)port);
	if ((rc = getaddrinfo(host, service, &hints, &ai)) != 0) {
		log_errorx("cannot listen", "addr=%s port=%u error=\"%s\"", host, (unsigned)port,
		    gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
	    /* The kernel caps the backlog at net.core.somaxconn. */
	    listen(fd, cs->cap < 65535 ? (int)cs->cap : 65535) == -1) {
		log_errorx("cannot listen", "addr=%s port=%u error=\"%s\"", host, (unsigned)port,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	if (conns_listen_fd(cs, fd) == -1) {
		log_errorx("cannot listen", "addr=%s port=%u error=\"evhttp\"", host,
		    (unsigned)port);
		return -1;
	}
	return 0;
}

int
conns_listen_fd(struct conns *cs, int fd)
{
	if ((cs->sock = evhttp_accept_socket_with_handle(cs->http, fd)) == NULL) {
		close(fd);
		return -1;
	}
	cs->lev = evhttp_bound_socket_get_listener(cs->sock);
	/* Rest after an accept() error instead of spinning on the
	 * connection left in the backlog. */
	evconnlistener_set_error_cb(cs->lev, conns_accept_error);
	return 0;
}

void
conns_stop_accepting(struct conns *cs)
{
	if (cs == NULL || cs->sock == NULL)
		return;
	cs->lev = NULL;
	evhttp_del_accept_socket(cs->http, cs->sock);
	cs->sock = NULL;
}

struct conn *
conns_request(struct conns *cs, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
	int fd = bev != NULL ? bufferevent_getfd(bev) : -1;
	struct conn *c;

	if (fd < 0)
		return NULL;
	c = (size_t)fd < cs->nbyfd ? cs->byfd[fd] : NULL;
	if (c == NULL || c->evcon != evcon)
		return conns_track(cs, evcon, fd);
	evtimer_add(c->deadline, &cs->timeout);
	return c;
}

void
conn_watch(struct conn *c, void (*gone)(void *), void *arg)
{
	c->gone = gone;
	c->gone_arg = arg;
}

static void
conn_answered(struct evhttp_request *req, void *arg)
{
	struct conn *c = arg;

	(void)req;
	c->held = false;
	/* The next request has the whole deadline. */
	evtimer_add(c->deadline, &c->cs->timeout);
}

void
conn_hold_until_answered(struct conn *c, struct evhttp_request *req)
{
	c->held = true;
	evhttp_request_set_on_complete_cb(req, conn_answered, c);
}

/* An RFC 9110 token: what a header name must be. */
static bool
is_token(const char *s)
{
	static const char tchar[] = "!#$%&'*+-.^_`|~";

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
			(*s >= 'A' && *s <= 'Z') || strchr(tchar, *s) != NULL))
			return false;
	return true;
}

/* One or more ASCII digits and nothing else (no sign, space or list). */
static bool
is_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Why the request's framing is ambiguous, or NULL. */
static const char *
framing_error(struct evhttp_request *req)
{
	const struct evkeyvalq *hs = evhttp_request_get_input_headers(req);
	const struct evkeyval *kv;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	/* Bodies of other methods are read by some libevent 2.1 builds and
	 * taken for the next request by others (and by some proxies): none
	 * of our endpoints takes one, so one is refused, whatever this
	 * build does. */
	bool has_body = m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PUT || m == EVHTTP_REQ_PATCH;
	const char *cl = NULL, *te = NULL;
	size_t ncl = 0, nte = 0;

	if (hs == NULL)
		return "no headers";
	for (kv = TAILQ_FIRST(hs); kv != NULL; kv = TAILQ_NEXT(kv, next)) {
		if (!is_token(kv->key))
			return "malformed header name";
		if (strcasecmp(kv->key, "Content-Length") == 0) {
			ncl++;
			cl = kv->value;
		} else if (strcasecmp(kv->key, "Transfer-Encoding") == 0) {
			nte++;
			te = kv->value;
		}
	}
	if (ncl > 1)
		return "repeated Content-Length";
	if (nte > 1)
		return "repeated Transfer-Encoding";
	if (cl != NULL && te != NULL)
		return "both Content-Length and Transfer-Encoding";
	if (cl != NULL && !is_digits(cl))
		return "malformed Content-Length";
	/* libevent reads "chunked" only: "gzip, chunked" would leave the body
	 * to be read as requests. */
	if (te != NULL && (!has_body || strcasecmp(te, "chunked") != 0))
		return "unsupported Transfer-Encoding";
	if (cl != NULL && !has_body && cl[strspn(cl, "0")] != '\0')
		return "Content-Length on a method without a body";
	return NULL;
}

bool
conns_refuse_framing(struct conns *cs, struct evhttp_request *req)
{
	const char *why = framing_error(req);
	time_t now;

	if (why == NULL)
		return false;
	metrics_inc(cs->metrics, "payrelay_http_framing_refused_total", "listener",
	    listeners[cs->which].name, NULL, NULL);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	if ((now = time(NULL)) != cs->framing_warned) {
		struct evhttp_connection *evcon = evhttp_request_get_connection(req);
		char *addr = NULL;
		ev_uint16_t port = 0;

		cs->framing_warned = now;
		if (evcon != NULL)
			evhttp_connection_get_peer(evcon, &addr, &port);
		log_warnx("request refused, ambiguous body framing (request smuggling?)",
		    "listener=%s reason=\"%s\" peer=%s", listeners[cs->which].name, why,
		    addr != NULL && *addr != '\0' ? addr : "-");
	}
	return true;
}

void
conns_free(struct conns *cs)
{
	size_t i;

	if (cs == NULL)
		return;
	LIST_REMOVE(cs, link);
	for (i = 0; i < cs->nfresh; i++)
		bufferevent_decref(cs->fresh[i]);
	if (cs->adopt != NULL)
		event_free(cs->adopt);
	if (cs->rest != NULL)
		event_free(cs->rest);
	free(cs->fresh);
	free(cs->byfd);
	free(cs);
}
