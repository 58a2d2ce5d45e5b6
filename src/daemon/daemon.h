/* Process state, passed down to every subsystem (relayd's `env`). */
#ifndef PAYRELAY_DAEMON_H
#define PAYRELAY_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "testcb.h"

struct event_base;
struct event;
struct evhttp;
struct evhttp_bound_socket;
struct config;
struct store;
struct httpc;
struct deliver;
struct poller;
struct confirmer;
struct payments;
struct metrics;
struct conns;

/* A test callback handed out by POST /v1/channels/{ch}/test (payrelayctl
 * send-test). Only a callback whose trade id is one of these is recorded
 * as a test: the flag is the daemon's, never the request's. */
#define TESTCB_SLOTS 16
#define TESTCB_TTL_MS 120000
struct testcb_slot {
	char channel[65];
	char trade_no[TESTCB_ID_LEN + 1];
	int64_t until_ms; /* 0: free */
};

/* What became of callbacks, for the log and (later) /metrics. */
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

struct env {
	struct event_base *base;
	const char *config_path;
	struct config *cfg; /* swapped whole on reload */
	struct store *store;
	struct httpc *httpc; /* one HTTP client engine for deliveries and polls */
	struct deliver *deliver;
	struct poller *poller;
	struct confirmer *confirmer; /* queries that confirm paid callbacks (SPEC §2.5) */
	struct payments *payments;   /* payments being created (SPEC §10.1) */
	struct metrics *metrics;
	struct evhttp *admin_http;
	struct evhttp *http;
	struct conns *conns;       /* the public listener and its connections */
	struct conns *admin_conns; /* the admin listener's */
	struct event *ev_sigterm, *ev_sigint, *ev_sighup, *ev_watchdog, *ev_shutdown;
	struct event *ev_drain; /* while stopping: asks the subsystems whether they are idle */
	/* host:pid:random, the owner of this process's leases in Redis
	 * (deliveries, polls, sweeps): set once at start. */
	char instance[96];
	bool stopping;
	bool aborting; /* shutdown_timeout passed: in-flight work is given back */
	bool notified_ready;
	size_t pending; /* callbacks waiting for Redis or a confirmation */
	uint64_t results[INGEST_NRESULTS];
	struct testcb_slot testcbs[TESTCB_SLOTS];
};

#endif
