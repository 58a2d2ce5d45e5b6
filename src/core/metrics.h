/* Prometheus metrics (SPEC §7): counters and one histogram kept in the
 * process, rendered as text by the admin API. Label values are escaped;
 * only configured names (channels, webhooks) and fixed words are used as
 * labels, so a caller on the internet cannot grow the set. */
#ifndef PAYRELAY_METRICS_H
#define PAYRELAY_METRICS_H

#include <stdint.h>

#include "util.h"

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Adds 1 to counter `name` with up to two labels (NULL label names end). */
void metrics_inc(struct metrics *m, const char *name, const char *l1, const char *v1,
    const char *l2, const char *v2);
/* Creates the counter at 0 when it does not exist yet: a series that
 * appears only with its first event hides that event from rate() and
 * increase(), and so from alerts on rare events (repeat payments). */
void metrics_touch(struct metrics *m, const char *name, const char *l1, const char *v1,
    const char *l2, const char *v2);
/* The per-channel counters alerts watch for single events, touched for
 * every channel of `cfg` (at start and after each reload). */
struct config;
void metrics_touch_channels(struct metrics *m, const struct config *cfg);
/* Records one callback answer latency in seconds. */
void metrics_observe_ack(struct metrics *m, double seconds);
/* Appends every counter and the histogram, with HELP and TYPE lines. */
int metrics_render(const struct metrics *m, struct sbuf *out) WUR;
/* Appends `name{labels} value` for a gauge (HELP/TYPE once per name is the
 * caller's, with metrics_family). */
int metrics_family(struct sbuf *out, const char *name, const char *type, const char *help) WUR;
int metrics_sample(struct sbuf *out, const char *name, const char *l1, const char *v1,
    double value) WUR;

#endif
