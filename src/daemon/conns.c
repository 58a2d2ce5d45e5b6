#include "conns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
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

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "config.h"
#include "form.h"
#include "log.h"
#include "metrics.h"
#include "proxyproto.h"

/* After an accept() failure for want of descriptors or memory, the listener
 * rests this long: the pending connection stays in the backlog, and
 * accepting again at once would only spin. */
#define ACCEPT_REST_MS 100

/* Buckets of the per-address connection counts: a power of two. */
#define IP_BUCKETS 4096

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

/* Why a connection was closed before its request (conn_refused). */
enum refusal { REFUSED_PER_IP, REFUSED_HEADER_TIMEOUT, REFUSED_PROXY_HEADER, REFUSED_COUNT };

/* Open connections of one client address (SPEC §3.1). */
struct ipcount {
	struct ipcount *next;
	unsigned char addr[16]; /* IPv6, or IPv4 mapped into it */
	size_t n;
};

struct conn {
	struct conns *cs;
	struct evhttp_connection *evcon;
	struct bufferevent *bev; /* NULL when adopted late (conns_request) */
	int fd;
	struct event *deadline;
	void (*gone)(void *);
	void *gone_arg;
	bool held; /* a request is being answered: no deadline */
	/* SPEC §3.1 */
	struct sockaddr_storage peer;   /* the TCP peer (ss_family 0: unknown) */
	struct sockaddr_storage client; /* the PROXY header's client, else the peer */
	bool trusted;                   /* the peer is one of trusted_proxies */
	struct ipcount *counted;        /* the per-address count it holds, or NULL */
	struct event *pp;               /* reading the PROXY header, or NULL */
	unsigned char *ppbuf;
	size_t pplen;
	/* header_timeout: waiting for the end of a request's headers. */
	struct event *hdr_deadline;
	struct evbuffer_cb_entry *hdr_cb;
	bool hdr_wait;
	bool hdr_bytes;     /* a byte of them came */
	unsigned hdr_state; /* 0 in a line, 1 after LF, 2 after LF CR */
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
	/* SPEC §3.1 (conns_set_proxy) */
	struct cidr *trusted;
	size_t ntrusted;
	bool proxy_protocol;
	size_t per_ip; /* 0: no cap */
	struct timeval header_timeout;
	bool header_timer; /* header_timeout is shorter than read_timeout */
	struct ipcount **ips;
	struct {
		time_t window;
		unsigned logged;
	} refused_log[REFUSED_COUNT];
	uint32_t ip_seed; /* of addr_hash: a client cannot aim at one bucket */
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

/* `sa`'s address as 16 bytes (IPv4 mapped into IPv6). false: none. */
static bool
addr_key(const struct sockaddr_storage *sa, unsigned char key[16])
{
	if (sa->ss_family == AF_INET) {
		memset(key, 0, 10);
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->ss_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		return true;
	}
	return false;
}

static size_t
addr_hash(const struct conns *cs, const unsigned char key[16])
{
	uint32_t h = 2166136261u ^ cs->ip_seed; /* FNV-1a */
	size_t i;

	for (i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h & (IP_BUCKETS - 1);
}

/* Counts `c` under its client address. false when that address already
 * holds per_ip connections (or out of memory): then `c` must go. */
static bool
conn_count_ip(struct conn *c)
{
	struct conns *cs = c->cs;
	unsigned char key[16];
	struct ipcount *ic;
	size_t h;

	if (cs->per_ip == 0 || !addr_key(&c->client, key))
		return true;
	if (cs->ips == NULL && (cs->ips = calloc(IP_BUCKETS, sizeof(*cs->ips))) == NULL)
		return false;
	h = addr_hash(cs, key);
	for (ic = cs->ips[h]; ic != NULL && memcmp(ic->addr, key, 16) != 0; ic = ic->next)
		;
	if (ic == NULL) {
		if ((ic = calloc(1, sizeof(*ic))) == NULL)
			return false;
		memcpy(ic->addr, key, 16);
		ic->next = cs->ips[h];
		cs->ips[h] = ic;
	}
	if (ic->n >= cs->per_ip)
		return false;
	ic->n++;
	c->counted = ic;
	return true;
}

static void
conn_uncount_ip(struct conn *c)
{
	struct conns *cs = c->cs;
	struct ipcount **pp, *ic = c->counted;

	if (ic == NULL)
		return;
	c->counted = NULL;
	if (--ic->n > 0)
		return;
	for (pp = &cs->ips[addr_hash(cs, ic->addr)]; *pp != NULL; pp = &(*pp)->next)
		if (*pp == ic) {
			*pp = ic->next;
			free(ic);
			return;
		}
}

static void
sockaddr_string(const struct sockaddr_storage *sa, char *out, size_t n)
{
	const void *a = NULL;

	if (sa->ss_family == AF_INET)
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (sa->ss_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (a == NULL || inet_ntop(sa->ss_family, a, out, (socklen_t)n) == NULL)
		snprintf(out, n, "-");
}

/* Log lines a second for each reason of conn_refused, at most. */
#define REFUSED_LOGS_PER_SEC 5

/* Counts a connection closed before its request, and logs it (a few times
 * a second for each reason: a flood must not flood the log too). */
static void
conn_refused(struct conn *c, enum refusal r, const char *why)
{
	static const char *const reasons[] = {
		[REFUSED_PER_IP] = "per_ip",
		[REFUSED_HEADER_TIMEOUT] = "header_timeout",
		[REFUSED_PROXY_HEADER] = "proxy_header",
	};
	struct conns *cs = c->cs;
	time_t now = time(NULL);
	char client[INET6_ADDRSTRLEN], peer[INET6_ADDRSTRLEN];
	const char *reason = reasons[r];

	metrics_inc(cs->metrics, "payrelay_http_refused_total", "reason", reason, NULL, NULL);
	if (now != cs->refused_log[r].window) {
		cs->refused_log[r].window = now;
		cs->refused_log[r].logged = 0;
	}
	if (cs->refused_log[r].logged++ >= REFUSED_LOGS_PER_SEC)
		return;
	sockaddr_string(&c->client, client, sizeof(client));
	sockaddr_string(&c->peer, peer, sizeof(peer));
	log_warnx("connection closed before a request", "reason=%s detail=\"%s\" peer=%s proxy=%s",
	    reason, why, client, c->trusted ? peer : "-");
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
	/* The bufferevent outlives this callback: nothing of it may call us
	 * any more. */
	if (c->hdr_cb != NULL && c->bev != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->hdr_cb);
	conn_uncount_ip(c);
	if (c->pp != NULL)
		event_free(c->pp);
	free(c->ppbuf);
	if (c->hdr_deadline != NULL)
		event_free(c->hdr_deadline);
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

/* header_timeout: the request line and headers (and before them, the
 * PROXY header) did not come in time. */
static void
conn_hdr_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->gone != NULL || c->held || !c->hdr_wait) {
		/* A request is being answered; the next one's headers get
		 * their time once it was (conns_request). */
		if (c->hdr_wait)
			evtimer_add(c->hdr_deadline, &c->cs->header_timeout);
		return;
	}
	if (!c->hdr_bytes && c->pplen == 0) {
		/* Idle, as keep-alive connections between requests are: closed
		 * as the read deadline closes them, not a refusal. */
		metrics_inc(c->cs->metrics, listeners[c->cs->which].timeouts, NULL, NULL, NULL,
		    NULL);
		log_debug("connection closed, idle for header_timeout", "fd=%d listener=%s", c->fd,
		    listeners[c->cs->which].name);
	} else {
		conn_refused(c, REFUSED_HEADER_TIMEOUT,
		    c->pp != NULL ? "no whole PROXY header in time"
				  : "no whole request headers in time");
	}
	/* Runs conn_closed, which frees c and this very timer (allowed). */
	evhttp_connection_free(c->evcon);
}

/* Waits for the end of the next request's headers. */
static void
conn_hdr_start(struct conn *c)
{
	if (c->hdr_deadline == NULL)
		return;
	c->hdr_wait = true;
	c->hdr_bytes = false;
	c->hdr_state = 0;
	evtimer_add(c->hdr_deadline, &c->cs->header_timeout);
}

static void
conn_hdr_done(struct conn *c)
{
	if (c->hdr_deadline == NULL)
		return;
	c->hdr_wait = false;
	evtimer_del(c->hdr_deadline);
}

/* Every byte evhttp's input gets: the end of the headers (an empty line)
 * stops header_timeout. evhttp has no callback of its own for it. */
static void
conn_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;
	struct evbuffer_ptr pos;
	struct evbuffer_iovec v[8];
	int n, i;
	size_t j, left = info->n_added;

	if (!c->hdr_wait || info->n_added == 0 ||
	    evbuffer_ptr_set(buf, &pos, info->orig_size, EVBUFFER_PTR_SET) == -1)
		return;
	c->hdr_bytes = true;
	n = evbuffer_peek(buf, (ev_ssize_t)info->n_added, &pos, v, 8);
	for (i = 0; i < n && i < 8 && left > 0; i++) {
		const unsigned char *b = v[i].iov_base;

		for (j = 0; j < v[i].iov_len && left > 0; j++, left--) {
			if (b[j] == '\n') {
				if (c->hdr_state != 0) {
					conn_hdr_done(c);
					return;
				}
				c->hdr_state = 1;
			} else if (b[j] == '\r' && c->hdr_state == 1) {
				c->hdr_state = 2;
			} else if (b[j] != '\r') {
				c->hdr_state = 0;
			}
		}
	}
}

/* The PROXY header's bytes (SPEC §3.1). evhttp's bufferevent does not read
 * until it is whole; what came after it is handed to evhttp as if read. */
static void
conn_pp_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct proxyproto pp;
	const char *why = NULL;
	struct bufferevent *bev = c->bev;
	ssize_t got;
	int n;

	(void)what;
	got = recv(fd, c->ppbuf + c->pplen, PROXYPROTO_MAX - c->pplen, 0);
	if (got == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (got <= 0) {
		/* Runs conn_closed, which frees c. */
		evhttp_connection_free(c->evcon);
		return;
	}
	c->pplen += (size_t)got;
	if ((n = proxyproto_parse(c->ppbuf, c->pplen, &pp, &why)) == 0)
		return;
	if (n == -1) {
		conn_refused(c, REFUSED_PROXY_HEADER, why);
		evhttp_connection_free(c->evcon);
		return;
	}
	if (!pp.local)
		c->client = pp.src;
	event_free(c->pp);
	c->pp = NULL;
	if (!conn_count_ip(c)) {
		conn_refused(c, REFUSED_PER_IP, "max_connections_per_ip reached");
		evhttp_connection_free(c->evcon);
		return;
	}
	bufferevent_enable(bev, EV_READ);
	if ((size_t)n < c->pplen) {
		if (evbuffer_add(bufferevent_get_input(bev), c->ppbuf + n, c->pplen - (size_t)n) ==
		    -1) {
			evhttp_connection_free(c->evcon);
			return;
		}
		free(c->ppbuf);
		c->ppbuf = NULL;
		c->pplen = 0;
		/* evhttp reads them now, and may close the connection: c is
		 * not touched after this. */
		bufferevent_trigger(bev, EV_READ, 0);
		return;
	}
	free(c->ppbuf);
	c->ppbuf = NULL;
	c->pplen = 0;
}

/* A new connection's client address and limits (SPEC §3.1). -1: close it. */
static int
conn_admit(struct conn *c, struct bufferevent *bev)
{
	struct conns *cs = c->cs;
	socklen_t len = sizeof(c->peer);

	c->bev = bev;
	if (getpeername(c->fd, (struct sockaddr *)&c->peer, &len) == -1)
		memset(&c->peer, 0, sizeof(c->peer));
	c->client = c->peer;
	c->trusted = cs->ntrusted > 0 &&
	    cidr_list_match(cs->trusted, cs->ntrusted, (const struct sockaddr *)&c->peer);
	if (cs->header_timer) {
		if ((c->hdr_deadline = evtimer_new(cs->base, conn_hdr_deadline, c)) == NULL ||
		    (c->hdr_cb = evbuffer_add_cb(bufferevent_get_input(bev), conn_input, c)) ==
			NULL)
			return -1;
		conn_hdr_start(c);
	}
	if (c->trusted && cs->proxy_protocol) {
		/* Counted once the header names the client. */
		if ((c->ppbuf = malloc(PROXYPROTO_MAX)) == NULL ||
		    (c->pp = event_new(cs->base, c->fd, EV_READ | EV_PERSIST, conn_pp_read, c)) ==
			NULL ||
		    event_add(c->pp, NULL) == -1)
			return -1;
		bufferevent_disable(bev, EV_READ);
		return 0;
	}
	/* A proxy that names its clients per request (X-Forwarded-For) is
	 * one address for many of them: it is not capped. */
	if (c->trusted)
		return 0;
	if (!conn_count_ip(c)) {
		conn_refused(c, REFUSED_PER_IP, "max_connections_per_ip reached");
		return -1;
	}
	return 0;
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
		    evhttp_connection_get_bufferevent(cbarg) == bev) {
			struct conn *c = conns_track(cs, cbarg, fd);

			if (c == NULL) {
				log_warnx("connection refused, out of memory", "fd=%d", fd);
				evhttp_connection_free(cbarg);
			} else if (conn_admit(c, bev) == -1) {
				/* Runs conn_closed, which frees c. */
				evhttp_connection_free(cbarg);
			}
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
	/* This request is whole; the next one's headers have header_timeout
	 * from now (held off while this one is answered). */
	if (c->hdr_deadline != NULL)
		conn_hdr_start(c);
	return c;
}

void
conn_watch(struct conn *c, void (*gone)(void *), void *arg)
{
	c->gone = gone;
	c->gone_arg = arg;
	/* Answered: the next request's headers have the whole
	 * header_timeout from now, however long this one waited. */
	if (gone == NULL && c->hdr_deadline != NULL && c->hdr_wait)
		evtimer_add(c->hdr_deadline, &c->cs->header_timeout);
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

int
conns_set_proxy(struct conns *cs, const struct config *cfg)
{
	if (cfg->ntrusted_proxies > 0) {
		if ((cs->trusted = calloc(cfg->ntrusted_proxies, sizeof(*cs->trusted))) == NULL)
			return -1;
		memcpy(cs->trusted, cfg->trusted_proxies,
		    cfg->ntrusted_proxies * sizeof(*cs->trusted));
		cs->ntrusted = cfg->ntrusted_proxies;
	}
	cs->proxy_protocol = cfg->proxy_protocol && cs->ntrusted > 0;
	cs->per_ip = cfg->max_connections_per_ip > 0 ? (size_t)cfg->max_connections_per_ip : 0;
	cs->header_timeout.tv_sec = cfg->header_timeout;
	/* At read_timeout or beyond the connection's deadline comes first. */
	cs->header_timer = cfg->header_timeout > 0 && cfg->header_timeout < cfg->read_timeout;
	if (getentropy(&cs->ip_seed, sizeof(cs->ip_seed)) == -1)
		cs->ip_seed = (uint32_t)time(NULL) ^ (uint32_t)getpid();
	return 0;
}

/* An address as proxies write it in forwarding headers: 192.0.2.1 or
 * 2001:db8::1, and with a port, which some load balancers add:
 * 192.0.2.1:4711, [2001:db8::1]:4711. `tok` is changed. */
static bool
parse_addr(char *tok, struct sockaddr_storage *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)out;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)out;
	char *colon = strchr(tok, ':'), *end;

	memset(out, 0, sizeof(*out));
	if (tok[0] == '[' && (end = strchr(tok, ']')) != NULL &&
	    (end[1] == '\0' || (end[1] == ':' && end[2 + strspn(end + 2, "0123456789")] == '\0'))) {
		*end = '\0';
		tok++;
	} else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
		*colon = '\0'; /* one colon: IPv4 and a port */
	}
	if (inet_pton(AF_INET, tok, &sin->sin_addr) == 1)
		out->ss_family = AF_INET;
	else if (inet_pton(AF_INET6, tok, &sin6->sin6_addr) == 1)
		out->ss_family = AF_INET6;
	return out->ss_family != 0;
}

/* The `n` bytes at `s` as an address, white space around them ignored. */
static bool
parse_addr_n(const char *s, size_t n, struct sockaddr_storage *out)
{
	char tok[INET6_ADDRSTRLEN + 8];

	memset(out, 0, sizeof(*out));
	while (n > 0 && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= sizeof(tok))
		return false;
	memcpy(tok, s, n);
	tok[n] = '\0';
	return parse_addr(tok, out);
}

/* The client a trusted proxy names in the request's headers: the last
 * address of the X-Forwarded-For headers (taken as one list, in order)
 * that is not a trusted proxy, the first one if all are; else X-Real-IP.
 * What a client wrote left of its proxy's entry is never believed; an
 * entry that is not an address, where the client would be, gives none. */
static bool
forwarded_client(const struct conns *cs, const struct evkeyvalq *hs, struct sockaddr_storage *out)
{
	const struct evkeyval *kv;
	bool found = false, all_trusted = true;
	struct sockaddr_storage first, a;
	const char *xri;

	memset(&first, 0, sizeof(first));
	memset(out, 0, sizeof(*out));
	for (kv = TAILQ_FIRST(hs); kv != NULL; kv = TAILQ_NEXT(kv, next)) {
		const char *v = kv->value;

		if (strcasecmp(kv->key, "X-Forwarded-For") != 0)
			continue;
		while (*v != '\0') {
			size_t n = strcspn(v, ",");
			bool ok = parse_addr_n(v, n, &a);

			v += n + (v[n] == ',');
			if (!found)
				first = a;
			found = true;
			if (!ok ||
			    !cidr_list_match(cs->trusted, cs->ntrusted,
				(const struct sockaddr *)&a)) {
				all_trusted = false;
				*out = a;
			}
		}
	}
	if (found && all_trusted)
		*out = first;
	if (out->ss_family != 0)
		return true;
	if (!found && (xri = evhttp_find_header(hs, "X-Real-IP")) != NULL)
		return parse_addr_n(xri, strlen(xri), out);
	return false;
}

bool
conns_client(const struct conns *cs, struct evhttp_request *req, struct sockaddr_storage *out)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
	int fd = bev != NULL ? bufferevent_getfd(bev) : -1;
	const struct conn *c = fd >= 0 && (size_t)fd < cs->nbyfd ? cs->byfd[fd] : NULL;
	const struct sockaddr *sa;
	const struct evkeyvalq *hs;
	struct sockaddr_storage fwd;

	memset(out, 0, sizeof(*out));
	if (c != NULL && c->evcon == evcon && c->peer.ss_family != 0) {
		*out = c->client;
	} else if (evcon != NULL && (sa = evhttp_connection_get_addr(evcon)) != NULL &&
	    (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
		memcpy(out, sa,
		    sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
					     : sizeof(struct sockaddr_in6));
	} else {
		return false;
	}
	/* Forwarding headers count from a trusted proxy only, and not when
	 * it speaks the PROXY protocol (its header said it all). Without a
	 * usable one, the client is the proxy itself. */
	if (cs->ntrusted > 0 && !cs->proxy_protocol &&
	    cidr_list_match(cs->trusted, cs->ntrusted, (const struct sockaddr *)out) &&
	    (hs = evhttp_request_get_input_headers(req)) != NULL && forwarded_client(cs, hs, &fwd))
		*out = fwd;
	return true;
}

void
conns_client_string(const struct conns *cs, struct evhttp_request *req, char *out, size_t n)
{
	struct sockaddr_storage sa;

	if (cs == NULL || req == NULL || !conns_client(cs, req, &sa))
		snprintf(out, n, "-");
	else
		sockaddr_string(&sa, out, n);
}

void
conns_free(struct conns *cs)
{
	size_t i;

	if (cs == NULL)
		return;
	LIST_REMOVE(cs, link);
	if (cs->ips != NULL) {
		for (i = 0; i < IP_BUCKETS; i++) {
			struct ipcount *ic, *next;

			for (ic = cs->ips[i]; ic != NULL; ic = next) {
				next = ic->next;
				free(ic);
			}
		}
		free(cs->ips);
	}
	free(cs->trusted);
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

const char *
conns_request_params(struct evhttp_request *req, struct params *p, int *status)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	enum form_error ferr = FORM_OK;

	if (query != NULL)
		ferr = form_decode(p, query, strlen(query));
	if (ferr == FORM_OK && evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		struct evbuffer *body = evhttp_request_get_input_buffer(req);
		size_t len = evbuffer_get_length(body);

		if (len > 0 &&
		    !form_content_type_ok(evhttp_find_header(evhttp_request_get_input_headers(req),
			"Content-Type"))) {
			*status = 415;
			return "unsupported content type";
		}
		if (len > 0)
			ferr = form_decode(p, (const char *)evbuffer_pullup(body, -1), len);
	}
	if (ferr != FORM_OK) {
		*status = 400;
		return form_error_str(ferr);
	}
	return NULL;
}
