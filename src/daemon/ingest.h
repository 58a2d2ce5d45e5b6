/* The public listener: GET|POST /notify/{channel} (SPEC §3). */
#ifndef PAYRELAY_INGEST_H
#define PAYRELAY_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct env;
struct conns;
struct ingest;

/* Request limits beyond form.h's (SPEC §3). */
#define INGEST_MAX_BODY (64 * 1024)
#define INGEST_MAX_HEADERS (72 * 1024) /* the request line counts: GET queries */
/* How long a test trade id handed out by ingest_test_expect is expected. */
#define TESTCB_TTL_MS 120000

/* What became of callbacks, for the log and /metrics. */
enum ingest_result {
	INGEST_RECORDED,
	INGEST_DUPLICATE,
	INGEST_REFUSED,     /* 400: verification or parse failure */
	INGEST_FORBIDDEN,   /* 403 */
	INGEST_NOT_FOUND,   /* 404 */
	INGEST_UNAVAILABLE, /* 503: Redis away, slow or failing */
	INGEST_OTHER,       /* 405, 415 */
	INGEST_NRESULTS,
};

/* Creates the public listener and binds [daemon] listen. NULL (logged) on
 * failure. */
struct ingest *ingest_new(struct env *env);
/* Stops accepting new connections; answered ones finish. */
void ingest_stop_accepting(struct ingest *in);
/* Closes the listener and its connections; accepts NULL. */
void ingest_free(struct ingest *in);
/* Callbacks waiting for Redis or a confirmation. */
size_t ingest_busy(const struct ingest *in);
/* Callbacks that ended as `r` since start. */
uint64_t ingest_total(const struct ingest *in, enum ingest_result r);
/* The listener's connections (for /metrics); NULL before it exists. */
const struct conns *ingest_conns(const struct ingest *in);
/* Expects a test callback of `channel` with test trade id `trade_no` for
 * TESTCB_TTL_MS. Returns 0, or -1 when every slot is taken. */
int ingest_test_expect(struct ingest *in, const char *channel, const char *trade_no) WUR;

#endif
