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
	struct evhttp *http;
	struct evhttp_bound_socket *http_sock;
	struct event *ev_sigterm, *ev_sigint, *ev_sighup, *ev_watchdog, *ev_shutdown;
	bool stopping;
	bool notified_ready;
	size_t pending; /* callbacks waiting for Redis */
	uint64_t results[INGEST_NRESULTS];
};

/* Called by ingest when a pending callback was answered: lets shutdown
 * finish once nothing is in flight. */
void daemon_request_done(struct env *env);

#endif
