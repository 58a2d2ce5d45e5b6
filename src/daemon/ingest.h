/* The public listener: GET|POST /notify/{channel} (SPEC §3). */
#ifndef PAYRELAY_INGEST_H
#define PAYRELAY_INGEST_H

#include "util.h"

struct env;

/* Request limits beyond form.h's (SPEC §3). */
#define INGEST_MAX_BODY (64 * 1024)
#define INGEST_MAX_HEADERS (72 * 1024) /* the request line counts: GET queries */

/* Creates env->http and binds [daemon] listen. Returns 0 or -1 (logged). */
int ingest_start(struct env *env) WUR;
/* Stops accepting new connections; answered ones finish. */
void ingest_stop_accepting(struct env *env);
void ingest_free(struct env *env);
/* Expects a test callback of `channel` with test trade id `trade_no` for
 * TESTCB_TTL_MS. Returns 0, or -1 when every slot is taken. */
int ingest_test_expect(struct env *env, const char *channel, const char *trade_no) WUR;

#endif
