/* Process state, passed down to every subsystem (relayd's `env`). */
#ifndef PAYRELAY_DAEMON_H
#define PAYRELAY_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
struct metrics;
struct conns;

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
	struct metrics *metrics;
	struct evhttp *admin_http;
	struct evhttp *http;
	struct conns *conns;       /* the public listener and its connections */
	struct conns *admin_conns; /* the admin listener's */
	struct event *ev_sigterm, *ev_sigint, *ev_sighup, *ev_watchdog, *ev_shutdown;
	bool stopping;
	bool aborting; /* shutdown_timeout passed: in-flight work is given back */
	bool notified_ready;
	size_t pending; /* callbacks waiting for Redis or a confirmation */
	uint64_t results[INGEST_NRESULTS];
};

/* Called when a pending callback was answered or a delivery settled: lets
 * shutdown finish once nothing is in flight. */
void daemon_request_done(struct env *env);

#endif
