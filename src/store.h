/* Redis: the one atomic recording step of SPEC §3 (a Lua script loaded
 * once, run with EVALSHA), over hiredis async on the daemon's event loop.
 * Key layout: docs/redis.md. */
#ifndef PAYRELAY_STORE_H
#define PAYRELAY_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "event.h"
#include "util.h"

struct event_base;
struct config;
struct store;

enum store_result {
	STORE_NEW,     /* recorded now */
	STORE_DUP,     /* recorded before: nothing new was written */
	STORE_ERROR,   /* Redis answered with an error, or the connection dropped */
	STORE_TIMEOUT, /* no answer within [redis] timeout_ms (it may still apply) */
};

/* One webhook that may get a delivery of the event. */
struct record_hook {
	const char *name;
	bool match_paid;     /* wants the event as recorded by the caller */
	bool match_mismatch; /* wants it if it turns out to be order.amount_mismatch */
};

struct record {
	const struct event *ev;
	const char *json; /* event_to_json(ev): a payment may become order.amount_mismatch */
	const struct record_hook *hooks;
	size_t nhooks;
};

/* `type` is the event type that was recorded (order.paid may have become
 * order.amount_mismatch); NULL unless r is STORE_NEW. */
typedef void store_record_cb(void *arg, enum store_result r, const char *type);
/* Called each time the connection becomes ready (script loaded). */
typedef void store_ready_cb(void *arg);

/* Copies what it needs of cfg ([redis], [stream], dedup_ttl): changing
 * those needs a restart. Connects at once and keeps reconnecting. */
struct store *store_new(struct event_base *base, const struct config *cfg, store_ready_cb *ready_cb,
    void *ready_arg);
/* Closes the connection; pending callbacks get STORE_ERROR. NULL is ok. */
void store_free(struct store *s);
bool store_ready(const struct store *s);
/* Requests sent and not yet answered or timed out. */
size_t store_in_flight(const struct store *s);

/* Runs the recording step. Returns -1 (cb is not called) when Redis is not
 * ready; otherwise 0, and cb is called exactly once, later. Copies
 * everything it needs from r. */
int store_record(struct store *s, const struct record *r, store_record_cb *cb, void *arg) WUR;

#endif
