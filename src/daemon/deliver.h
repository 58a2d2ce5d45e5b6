/* Webhook deliveries (SPEC §5.2): claims due deliveries from Redis with a
 * lease, POSTs them signed (Standard Webhooks) through the shared HTTP
 * engine, and records each outcome. docs/delivery.md tells the guarantees. */
#ifndef PAYRELAY_DELIVER_H
#define PAYRELAY_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct env;
struct deliver;

/* How long past timeout_ms a claimed delivery stays leased. */
#define DELIVER_LEASE_MARGIN_MS 5000
/* How often due deliveries are looked for when nothing else wakes us. */
#define DELIVER_TICK_MS 500
/* Most deliveries claimed in one Redis call. */
#define DELIVER_CLAIM_BATCH 64

struct deliver *deliver_new(struct env *env);
void deliver_free(struct deliver *d);
/* Something became due (a callback was recorded, capacity was freed). */
void deliver_kick(struct deliver *d);
/* Stops claiming; attempts in flight go on. */
void deliver_stop(struct deliver *d);
/* Cancels the attempts in flight and gives their deliveries back. */
void deliver_abort(struct deliver *d);
/* Attempts and claims not yet settled in Redis. */
size_t deliver_busy(const struct deliver *d);
/* Whether this process's breaker for `webhook` is open. */
bool deliver_breaker_open(struct deliver *d, const char *webhook);

#endif
