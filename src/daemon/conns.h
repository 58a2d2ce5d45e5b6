/* A listener's connections (SPEC §3, §7, hardening): the public one's at
 * most [daemon] max_connections open at once (the admin one's at most
 * ADMIN_MAX_CONNECTIONS), and a whole request within [daemon] read_timeout
 * of the connection's start or its previous request, however slowly its
 * bytes trickle in (slowloris).
 *
 * At the cap the listener stops accepting: further connections wait in the
 * kernel's backlog (up to net.core.somaxconn) until one closes. libevent
 * 2.1's evhttp has no connection limit of its own, so every accepted
 * connection is adopted right after evhttp set it up (its bufferevent is
 * created here, through evhttp_set_bevcb) and watched through its close
 * callback, which therefore belongs to this module: a request that must
 * know when its connection goes uses conn_watch() instead. */
#ifndef PAYRELAY_CONNS_H
#define PAYRELAY_CONNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct config;
struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_request;
struct metrics;
struct conns;
struct params;
struct conn;
struct sockaddr_storage;

/* File descriptors kept free of connections for Redis, the log, and curl
 * (which also needs the webhooks' max_in_flight). */
#define CONNS_FD_RESERVE 256
/* Open admin connections at most (scrapers, payrelayctl, operators); more
 * wait in the backlog. Counted in the public listener's descriptor reserve. */
#define ADMIN_MAX_CONNECTIONS 64

enum conns_listener { CONNS_PUBLIC, CONNS_ADMIN };

/* `cap` connections at most, unless the open-file limit (raised to its
 * hard limit here) cannot hold them and `reserve` more: then fewer, with a
 * warning. `read_timeout` in seconds. `which` names the listener in logs
 * and picks its metrics (payrelay_http_* or payrelay_admin_http_*). */
struct conns *conns_new(struct event_base *base, struct evhttp *http, struct metrics *m,
    enum conns_listener which, size_t cap, size_t reserve, int read_timeout) WUR;
/* The public listener's client addresses and limits (SPEC §3.1), from
 * [daemon] trusted_proxies, proxy_protocol, max_connections_per_ip and
 * header_timeout (copied): once, before conns_listen.
 * - A peer in trusted_proxies with proxy_protocol on must begin with a
 *   PROXY v1 or v2 header, read here before evhttp sees a byte; its
 *   client is the header's (LOCAL: the peer). Without the header (or
 *   with garbage) the connection is closed.
 * - A trusted peer without proxy_protocol names the client of each
 *   request in X-Forwarded-For or X-Real-IP (conns_client).
 * - At most max_connections_per_ip connections per client address: the
 *   PROXY header's, or the peer's. A trusted peer without proxy_protocol
 *   is not capped (its clients change per request).
 * - The request line and headers within header_timeout of the
 *   connection's start, or of the previous request.
 * Refusals count in payrelay_http_refused_total{reason}. 0, or -1 (out
 * of memory). */
int conns_set_proxy(struct conns *cs, const struct config *cfg) WUR;
/* `req`'s client address (SPEC §3.1) into *out: the PROXY header's; or
 * from a trusted peer (without proxy_protocol) the rightmost
 * X-Forwarded-For address that is not a trusted proxy, or X-Real-IP; or
 * the TCP peer. false when there is none (a unix socket). */
bool conns_client(const struct conns *cs, struct evhttp_request *req, struct sockaddr_storage *out);
/* The same as text for logs; "-" when none (or `cs` or `req` NULL). */
void conns_client_string(const struct conns *cs, struct evhttp_request *req, char *out, size_t n);
/* Listens on host:port (numeric) with a backlog of the cap (the kernel
 * caps it at somaxconn). 0 or -1 (logged). */
int conns_listen(struct conns *cs, const char *host, uint16_t port) WUR;
/* Listens on `fd`, a bound and listening stream socket (the admin unix
 * socket), which it owns from now on, even on failure. 0 or -1. */
int conns_listen_fd(struct conns *cs, int fd) WUR;
/* Stops accepting; open connections stay. */
void conns_stop_accepting(struct conns *cs);
/* Only after evhttp_free(): its close callbacks still reach this module. */
void conns_free(struct conns *cs);

/* Called for every request the evhttp hands over: restarts the
 * connection's deadline. Returns its connection, or NULL when it could not
 * be tracked (out of memory). */
struct conn *conns_request(struct conns *cs, struct evhttp_request *req);
/* Decodes what a gateway or a payer's browser sends to the public listener
 * as PHP's $_REQUEST reads it (SPEC §3): the query, then a POST's form body,
 * which wins on a repeated name. /notify and /return read their parameters
 * here, so both see the same fields. Returns NULL, or why not with *status
 * set: 415 (a body that is not a form), 400 (form_decode's refusal). */
const char *conns_request_params(struct evhttp_request *req, struct params *p, int *status);
/* `gone(arg)` runs if the connection closes before conn_watch(c, NULL,
 * NULL); while watched, the deadline does not close the connection (the
 * request is waiting for Redis, whose own timeout answers it). */
void conn_watch(struct conn *c, void (*gone)(void *arg), void *arg);
/* Holds the deadline off until `req`'s answer is written, then restarts it:
 * for a request answered later (the admin API waits for Redis and polls).
 * Sets req's completion callback. */
void conn_hold_until_answered(struct conn *c, struct evhttp_request *req);

/* Refuses a request whose body another HTTP hop could frame otherwise
 * than libevent 2.1 did (request smuggling: a proxy in front may take the
 * rest as the next request, or the other way round): Content-Length
 * repeated, or not plain ASCII digits; Content-Length with
 * Transfer-Encoding; a Transfer-Encoding other than one "chunked"; a body
 * on a method that some libevent builds read none for (all but POST, PUT
 * and PATCH); a header name that is not an RFC 9110 token ("Content-Length :").
 * Returns false for a sound request. Returns true when refused: counted
 * (payrelay_http_framing_refused_total), logged at most once a second, and
 * "Connection: close" added to the answer, which the caller sends (400),
 * so nothing after it on the connection is read as a request. */
bool conns_refuse_framing(struct conns *cs, struct evhttp_request *req) WUR;

size_t conns_open(const struct conns *cs);
size_t conns_cap(const struct conns *cs);

#endif
