/* Standard Webhooks signing and the retry schedule (SPEC §5.2): the pure
 * part of deliveries, shared with the unit tests. */
#ifndef PAYRELAY_WEBHOOK_H
#define PAYRELAY_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

struct webhook;

/* The webhook-signature header value for one message: "v1,<base64>" per
 * secret, separated by spaces. The caller frees it; NULL on failure. */
char *webhook_signature(const struct webhook *w, const char *msg_id, long long timestamp,
    const char *body, size_t body_len);
/* The delay before the attempt after `attempts_done` failed ones, in ms,
 * with ±10 % jitter (`jitter` in [-1, 1]) and a Retry-After (seconds, or -1)
 * honoured up to the schedule's largest delay; -1 when none is left. */
int64_t webhook_next_delay_ms(const unsigned *schedule, size_t nschedule, long attempts_done,
    long retry_after, double jitter);

#endif
