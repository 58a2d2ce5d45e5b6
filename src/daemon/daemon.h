/* Process state, passed down to every subsystem (relayd's `env`). */
#ifndef PAYRELAY_DAEMON_H
#define PAYRELAY_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct event;
struct config;
struct store;
struct httpc;
struct deliver;
struct poller;
struct confirmer;
struct payments;
struct metrics;
struct ingest;
struct admin;

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
	struct ingest *ingest; /* the public listener (/notify) and its callbacks */
	struct admin *admin;   /* the admin listener */
	struct event *ev_sigterm, *ev_sigint, *ev_sighup, *ev_watchdog, *ev_shutdown;
	struct event *ev_drain; /* while stopping: asks the subsystems whether they are idle */
	/* host:pid:random, the owner of this process's leases in Redis
	 * (deliveries, polls, sweeps): set once at start. */
	char instance[96];
	bool stopping;
	bool aborting; /* shutdown_timeout passed: in-flight work is given back */
	bool notified_ready;
	/* Refunds claimed and not yet settled (refunds.c): a stop waits for
	 * them, as a claim cut off at the gateway is of unknown outcome. */
	size_t refunding;
	/* Returns being answered (returns.c): a stop waits for them as for
	 * callbacks, since a verified return may be in its record step. */
	size_t returning;
};

#endif
