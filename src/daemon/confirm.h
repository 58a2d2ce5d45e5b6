/* Confirmation by query (SPEC §2.5): a paid callback of a channel with
 * `confirm = query` is recorded only once the gateway's own query API (the
 * family's poll query and parser) says that this order is paid with the
 * same gateway trade id and the same amount. The queries share the curl
 * engine and are bounded per channel, in flight and per second, so
 * verified callbacks cannot be turned into a flood against the gateway. */
#ifndef PAYRELAY_CONFIRM_H
#define PAYRELAY_CONFIRM_H

#include <stdint.h>

#include "util.h"

struct env;
struct channel;
struct confirmer;
struct confirm;

enum confirm_outcome {
	CONFIRM_CONFIRMED,   /* paid, same trade id and amount: record it */
	CONFIRM_REFUSED,     /* unknown, unpaid, another state, trade id or amount: 400 */
	CONFIRM_UNAVAILABLE, /* no usable answer, over the bound, or stopping: 503 */
};

const char *confirm_outcome_str(enum confirm_outcome o);

/* Called once per started confirmation, from the event loop. `detail` says
 * why, for the log (never a secret); it lives during the call. */
typedef void confirm_cb(void *arg, enum confirm_outcome o, const char *detail);

struct confirmer *confirm_new(struct env *env);
/* Cancels whatever still runs (callbacks are not called): before
 * httpc_free. NULL is ok. */
void confirm_free(struct confirmer *cf);
/* SIGTERM: every running confirmation ends now as CONFIRM_UNAVAILABLE
 * ("stopping"), its callback called from here; none start any more. */
void confirm_stop(struct confirmer *cf);

/* Asks the gateway of `ch` (confirm on, api_base set) about a paid callback
 * for `out_trade_no` with gateway trade id `trade_no` of `amount_fen`.
 * Copies what it needs. Returns a handle, and cb is called once, later; or
 * NULL when it did not start (over the channel's confirm_max_in_flight or
 * confirm_rate, stopping, out of memory): cb is not called, *why says why
 * (static), and the refusal is counted as unavailable. */
struct confirm *confirm_start(struct confirmer *cf, const struct channel *ch, const char *trade_no,
    const char *out_trade_no, int64_t amount_fen, confirm_cb *cb, void *arg, const char **why);

#endif
