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
struct hook; /* one webhook as the engine knows it: lives as long as the engine */
struct store_claimed;
struct webhook;

/* How long past timeout_ms a claimed delivery stays leased. */
#define DELIVER_LEASE_MARGIN_MS 5000
/* How often due deliveries are looked for when nothing else wakes us. */
#define DELIVER_TICK_MS 500
/* Most deliveries claimed in one Redis call. */
#define DELIVER_CLAIM_BATCH 64

struct deliver *deliver_new(struct env *env);
void deliver_free(struct deliver *d);
/* Something may have become due (a delivery made due, not claimed at
 * record; a replay; Redis ready): claims again, now and as capacity frees. */
void deliver_kick(struct deliver *d);
/* Stops claiming; attempts in flight go on. */
void deliver_stop(struct deliver *d);
/* Cancels the attempts in flight and gives their deliveries back. */
void deliver_abort(struct deliver *d);
/* Attempts, claims and reservations not yet settled in Redis. */
size_t deliver_busy(const struct deliver *d);
/* Claim at record (docs/delivery.md): a new event's delivery to `w` may be
 * made already leased to this instance by the record step, its first
 * attempt started from the step's answer. Reserves a place among the
 * webhook's max_in_flight for it, when its breaker is closed and there is
 * room: returns the hook holding the reservation, with the lease end in
 * *lease_until_ms; or NULL (the delivery is made due, the claim path sends
 * it). Each reservation ends with one deliver_reserved call. */
struct hook *deliver_reserve(struct deliver *d, const struct webhook *w,
    int64_t *lease_until_ms) WUR;
/* The record step answered: the delivery `it` (attempts made: 0) was made
 * claimed, leased until lease_until_ms: it is sent now; or it is NULL (a
 * duplicate, the webhook does not want the final type, the step failed or
 * timed out): any delivery made leased to us goes out after its lease. */
void deliver_reserved(struct deliver *d, struct hook *h, int64_t lease_until_ms,
    const struct store_claimed *it);
/* Requests to `webhook` this process has out now (its max_in_flight
 * places taken; an attempt whose receiver answered no longer counts). */
int deliver_requests(struct deliver *d, const char *webhook);
/* Whether this process's breaker for `webhook` is open. */
bool deliver_breaker_open(struct deliver *d, const char *webhook);

#endif
