/* Reconciliation (SPEC §6): polls the gateways about registered orders
 * whose callback has not come, and sweeps epay's recent orders. Shares the
 * HTTP engine with deliveries and records through record_event, so a paid
 * poll and its callback are one event. docs/reconciliation.md. */
#ifndef PAYRELAY_POLL_H
#define PAYRELAY_POLL_H

#include <stddef.h>

#include "util.h"

struct env;
struct poller;

#define POLL_TICK_MS 250
/* Queries in flight per channel at most, whatever poll_rate allows. */
#define POLL_MAX_IN_FLIGHT 16
/* How long past poll_timeout_ms a claimed order stays leased. */
#define POLL_LEASE_MARGIN_MS 5000
/* Pages of act=orders read in one sweep at most (50 orders each). */
#define SWEEP_MAX_PAGES 20

enum poll_now_status {
	POLL_NOW_DONE,    /* polled: result and detail say what came of it */
	POLL_NOW_MISSING, /* no such registered order */
	POLL_NOW_SETTLED, /* not pending any more: result is its state */
	POLL_NOW_BUSY,    /* another poll of it is under way */
	POLL_NOW_FAILED,  /* Redis or the channel is not usable: detail says */
};

typedef void poll_now_cb(void *arg, enum poll_now_status st, const char *result,
    const char *detail);

struct poller *poll_new(struct env *env);
void poll_free(struct poller *p);
/* Stops polling and sweeping: queries in flight are cancelled (their
 * leases expire); recordings under way finish. */
void poll_stop(struct poller *p);
/* Recordings and Redis updates not yet answered. */
size_t poll_busy(const struct poller *p);
/* Polls one registered order now. Returns -1 (cb not called) when Redis is
 * not ready or the channel cannot be polled. */
int poll_now(struct poller *p, const char *channel, const char *out_trade_no, poll_now_cb *cb,
    void *arg) WUR;

#endif
