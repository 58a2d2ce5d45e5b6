/* The public listener's connections (SPEC §3, hardening): at most
 * [daemon] max_connections open at once, and a whole request within
 * [daemon] read_timeout of the connection's start or its previous request,
 * however slowly its bytes trickle in (slowloris).
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

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_request;
struct metrics;
struct conns;
struct conn;

/* File descriptors kept free of connections for Redis, the log, and curl
 * (which also needs the webhooks' max_in_flight). */
#define CONNS_FD_RESERVE 256

/* `cap` connections at most, unless the open-file limit (raised to its
 * hard limit here) cannot hold them and `reserve` more: then fewer, with a
 * warning. `read_timeout` in seconds. */
struct conns *conns_new(struct event_base *base, struct evhttp *http, struct metrics *m, size_t cap,
    size_t reserve, int read_timeout) WUR;
/* Listens on host:port (numeric) with a backlog of somaxconn. 0 or -1 (logged). */
int conns_listen(struct conns *cs, const char *host, uint16_t port) WUR;
/* Makes another listener (the admin one) rest 100 ms after an accept()
 * error instead of spinning on the connection left in its backlog. */
void conns_guard_listener(struct evhttp_bound_socket *sock);
/* Stops accepting; open connections stay. */
void conns_stop_accepting(struct conns *cs);
/* Only after evhttp_free(): its close callbacks still reach this module. */
void conns_free(struct conns *cs);

/* Called for every request the evhttp hands over: restarts the
 * connection's deadline. Returns its connection, or NULL when it could not
 * be tracked (out of memory). */
struct conn *conns_request(struct conns *cs, struct evhttp_request *req);
/* `gone(arg)` runs if the connection closes before conn_watch(c, NULL,
 * NULL); while watched, the deadline does not close the connection (the
 * request is waiting for Redis, whose own timeout answers it). */
void conn_watch(struct conn *c, void (*gone)(void *arg), void *arg);

size_t conns_open(const struct conns *cs);
size_t conns_cap(const struct conns *cs);

#endif
