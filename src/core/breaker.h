/* A webhook's circuit breaker (docs/delivery.md, "Circuit breaker"), one
 * per webhook and process. Pure: the caller passes the time and the
 * webhook's settings, and logs the transitions these functions report.
 *
 * closed --(failures for breaker_after s, and BREAKER_MIN_FAILURES in a
 * row)--> open; open: one probe at a time, the first PROBE_FIRST_MS after
 * opening, the gap doubling after each failed probe up to
 * probe_interval_max; any success --> closed. */
#ifndef PAYRELAY_BREAKER_H
#define PAYRELAY_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

/* A breaker opens only after this many failures in a row as well. */
#define BREAKER_MIN_FAILURES 3
#define BREAKER_PROBE_FIRST_MS 1000

struct breaker {
	int64_t failing_since_ms; /* first failure of the current run; 0: none */
	int failures;             /* in a row */
	bool open;
	bool probing; /* a probe is in flight */
	int64_t probe_interval_ms;
	int64_t next_probe_ms;
};

/* What the breaker allows now, with `in_flight` attempts under way. */
enum breaker_allows {
	BREAKER_SEND,  /* closed: claim as capacity allows */
	BREAKER_PROBE, /* open, and a probe is due: claim one */
	BREAKER_WAIT,  /* open: claim nothing */
};

enum breaker_allows breaker_allows(const struct breaker *b, int64_t now, int in_flight);
/* A probe was started, or ended whatever its outcome. */
void breaker_probe_start(struct breaker *b);
void breaker_probe_end(struct breaker *b);
/* An attempt (a probe too) succeeded. Returns true when that closed the
 * breaker. */
bool breaker_success(struct breaker *b);
/* An attempt that was not a probe failed at `now`; `breaker_after` seconds,
 * 0: the breaker never opens. Returns true when that opened the breaker. */
bool breaker_failure(struct breaker *b, int64_t now, int breaker_after);
/* A probe failed at `now`: the next one comes after twice the gap, at most
 * `probe_interval_max` seconds. */
void breaker_probe_failed(struct breaker *b, int64_t now, int probe_interval_max);

#endif
