/* When to try again: the ±10 % jitter that webhook retries and order polls
 * share, and the poll schedule of a registered order (docs/reconciliation.md,
 * "The poller"). Pure: time and randomness come in as arguments. */
#ifndef PAYRELAY_BACKOFF_H
#define PAYRELAY_BACKOFF_H

#include <stddef.h>
#include <stdint.h>

/* A uniform random number r mapped onto [-1, 1]. */
double backoff_unit(uint32_t r);
/* backoff_unit of a fresh random number; 0 (no jitter) when none can be
 * read: it is jitter only. */
double backoff_random(void);
/* `ms` with ±10 % jitter: `unit` in [-1, 1] picks where in that range. */
int64_t backoff_jitter_ms(int64_t ms, double unit);

/* When the first poll of an order registered at `now` is due: `poll_after`
 * seconds later, without jitter, but never after the order expires. */
int64_t backoff_first_poll_ms(int64_t now, int poll_after, int64_t expires_ms);
/* The gap in ms after the `polls`-th poll (1 the first): poll_gaps[polls - 1],
 * the last entry repeating, with ±10 % jitter (`unit` in [-1, 1]); `ngaps`
 * is at least 1 (config.c sees to it). The store caps the poll it
 * schedules at the order's expiry. */
int64_t backoff_poll_gap_ms(const unsigned *gaps, size_t ngaps, long polls, double unit);

#endif
