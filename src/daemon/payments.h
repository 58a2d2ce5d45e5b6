/* POST /v1/payments (SPEC §10.1, docs/payments.md): payrelay creates a
 * payment at the channel's gateway with the keys it holds, and registers
 * the order (SPEC §6) with its amount in the same Redis step that stores
 * the gateway's first answer. Idempotent by (channel, out_trade_no). */
#ifndef PAYRELAY_PAYMENTS_H
#define PAYRELAY_PAYMENTS_H

#include <stddef.h>

struct env;
struct evhttp_request;
struct payments;

/* The gateway's create call: its whole time limit, and how long the
 * creation lock outlives it (a crashed creator's lock expires by itself). */
#define PAYMENTS_TIMEOUT_MS 15000
#define PAYMENTS_LOCK_MS (PAYMENTS_TIMEOUT_MS + 5000)
#define PAYMENTS_MAX_OUT_TRADE_NO 128
#define PAYMENTS_MAX_TEXT 1024 /* subject, param, product_id, fields */
#define PAYMENTS_MAX_EXPIRES_IN (30 * 86400)

/* The creations in flight (env->payments). */
struct payments *payments_new(struct env *env);
/* SIGTERM: every creation waiting for its gateway is stopped now (its
 * call cancelled, its lock given back, 503 answered: the gateway may or
 * may not have created it, as after a timeout); those waiting for Redis
 * finish; none start any more. */
void payments_stop(struct payments *ps);
/* Creations still in flight (waiting for Redis): the drain waits for them. */
size_t payments_busy(const struct payments *ps);
/* Frees what is left, unanswered (after the loop): before httpc_free, as it
 * cancels its calls. NULL is ok. */
void payments_free(struct payments *ps);

/* Answers `req` (a POST to /v1/payments, already authorized), now or
 * later: the admin listener holds the connection until it is answered. */
void payments_create(struct env *env, struct evhttp_request *req);

#endif
