/* payrelayd: receives payment gateway callbacks, verifies them and records
 * them in Redis before acknowledging (SPEC §3). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "config.h"
#include "config_build.h"
#include "crypto.h"
#include "admin.h"
#include "confirm.h"
#include "daemon.h"
#include "deliver.h"
#include "httpc.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "payments.h"
#include "poll.h"
#include "sdnotify.h"
#include "store.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: payrelayd -c FILE [--check-config]\n"
	    "       payrelayd --version\n"
	    "\n"
	    "  -c, --config FILE   configuration file (INI, see conf/payrelayd.conf)\n"
	    "      --check-config  validate FILE, print each problem as FILE:LINE: message,\n"
	    "                      exit 0 when valid, 2 when not\n"
	    "  -V, --version       print the version\n"
	    "  -h, --help          this text\n");
}

/* Prints every problem as FILE:LINE: message. */
static void
print_config_errors(FILE *f, const char *path, const struct config_errors *errs)
{
	size_t i;

	for (i = 0; i < errs->n; i++) {
		if (errs->v[i].line > 0)
			fprintf(f, "%s:%d: %s\n", path, errs->v[i].line, errs->v[i].msg);
		else
			fprintf(f, "%s: %s\n", path, errs->v[i].msg);
	}
}

static void
log_config_errors(const char *path, const struct config_errors *errs)
{
	size_t i;

	for (i = 0; i < errs->n; i++)
		log_errorx("config error", "file=\"%s\" line=%d error=\"%s\"", path,
		    errs->v[i].line, errs->v[i].msg);
}

/* epoll's changelist folds the add/delete pairs evhttp makes around every
 * request into one epoll_ctl per descriptor and loop turn. */
static struct event_base *
event_loop_new(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return base;
}

/* host:pid:random: unique among the instances sharing one Redis, and
 * readable in a lease owner field. */
static void
instance_id(char *out, size_t n)
{
	char host[64] = "host";
	unsigned char rnd[4];
	char rhex[9];

	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	if (crypto_random(rnd, sizeof(rnd)) == -1)
		memset(rnd, 0, sizeof(rnd));
	hex_lower(rhex, rnd, sizeof(rnd));
	snprintf(out, n, "%.60s:%ld:%s", host, (long)getpid(), rhex);
}

static bool
nothing_in_flight(const struct env *env)
{
	return ingest_busy(env->ingest) == 0 && deliver_busy(env->deliver) == 0 &&
	    poll_busy(env->poller) == 0 && env->refunding == 0 && env->returning == 0 &&
	    payments_busy(env->payments) == 0;
}

/* While stopping, every DRAIN_CHECK_MS: the subsystems are asked whether
 * anything is still in flight, from the top, so none of them calls up here
 * (pgbouncer's janitor does the same). */
#define DRAIN_CHECK_MS 20

static void
on_drain(evutil_socket_t fd, short what, void *arg)
{
	struct env *env = arg;

	(void)fd;
	(void)what;
	if (nothing_in_flight(env)) {
		log_info("nothing left in flight, exiting", "");
		event_base_loopexit(env->base, NULL);
	}
}

static void
on_store_ready(void *arg)
{
	struct env *env = arg;

	if (!env->notified_ready) {
		env->notified_ready = true;
		sdnotify_ready();
		log_info("ready", "channels=%zu webhooks=%zu instance=%s", env->cfg->nchannels,
		    env->cfg->nwebhooks, env->instance);
	}
	deliver_kick(env->deliver);
}

static void
on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct env *env = arg;
	struct timeval tv = { 0, 0 };

	if (env->aborting) {
		log_warnx("exiting with work unsettled, leases expire",
		    "pending=%zu deliveries=%zu", ingest_busy(env->ingest),
		    deliver_busy(env->deliver));
		event_base_loopexit(env->base, NULL);
		return;
	}
	env->aborting = true;
	log_warnx("shutdown timeout, giving in-flight deliveries back",
	    "pending=%zu deliveries=%zu", ingest_busy(env->ingest), deliver_busy(env->deliver));
	deliver_abort(env->deliver);
	if (nothing_in_flight(env)) {
		event_base_loopexit(env->base, NULL);
		return;
	}
	/* The releases need Redis: wait for them, but not longer than a
	 * Redis request may take. */
	tv.tv_sec = (env->cfg->redis_timeout_ms + 200) / 1000;
	tv.tv_usec = (env->cfg->redis_timeout_ms + 200) % 1000 * 1000;
	evtimer_add(env->ev_shutdown, &tv);
}

static void
on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct env *env = arg;
	struct timeval tv = { env->cfg->shutdown_timeout, 0 };
	struct timeval drain = { 0, DRAIN_CHECK_MS * 1000 };

	if (env->stopping)
		return;
	env->stopping = true;
	sdnotify_stopping();
	log_info("stopping", "signal=%d pending=%zu deliveries=%zu", (int)sig,
	    ingest_busy(env->ingest), deliver_busy(env->deliver));
	ingest_stop_accepting(env->ingest);
	deliver_stop(env->deliver);
	poll_stop(env->poller);
	/* Callbacks waiting for their confirmation get 503 (and their orders
	 * registered for polling): they stay pending until answered. */
	confirm_stop(env->confirmer);
	/* Creations waiting for their gateway get 503; those waiting for
	 * Redis are drained. */
	payments_stop(env->payments);
	if (nothing_in_flight(env)) {
		event_base_loopexit(env->base, NULL);
		return;
	}
	evtimer_add(env->ev_shutdown, &tv);
	event_add(env->ev_drain, &drain);
}

static bool
str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

static bool
netaddr_differs(const struct netaddr *a, const struct netaddr *b)
{
	return a->is_unix != b->is_unix || a->port != b->port || strcmp(a->host, b->host) != 0 ||
	    strcmp(a->path, b->path) != 0;
}

/* What the listener and the store copied at start-up. */
static bool
restart_needed(const struct config *a, const struct config *b)
{
	return netaddr_differs(&a->listen, &b->listen) ||
	    netaddr_differs(&a->admin_listen, &b->admin_listen) ||
	    netaddr_differs(&a->redis, &b->redis) || a->redis_db != b->redis_db ||
	    str_differs(a->redis_user, b->redis_user) ||
	    str_differs(a->redis_password, b->redis_password) ||
	    str_differs(a->redis_prefix, b->redis_prefix) ||
	    a->redis_timeout_ms != b->redis_timeout_ms ||
	    a->nredis_sentinels != b->nredis_sentinels ||
	    (a->nredis_sentinels > 0 &&
		memcmp(a->redis_sentinels, b->redis_sentinels,
		    a->nredis_sentinels * sizeof(*a->redis_sentinels)) != 0) ||
	    str_differs(a->redis_master_name, b->redis_master_name) ||
	    str_differs(a->redis_sentinel_password, b->redis_sentinel_password) ||
	    a->redis_min_replicas != b->redis_min_replicas ||
	    a->redis_replica_timeout_ms != b->redis_replica_timeout_ms ||
	    str_differs(a->stream_key, b->stream_key) || a->stream_maxlen != b->stream_maxlen ||
	    a->dedup_ttl != b->dedup_ttl || a->max_connections != b->max_connections ||
	    a->read_timeout != b->read_timeout || a->proxy_protocol != b->proxy_protocol ||
	    a->max_connections_per_ip != b->max_connections_per_ip ||
	    a->header_timeout != b->header_timeout || a->ntrusted_proxies != b->ntrusted_proxies ||
	    (a->ntrusted_proxies > 0 &&
		memcmp(a->trusted_proxies, b->trusted_proxies,
		    a->ntrusted_proxies * sizeof(*a->trusted_proxies)) != 0);
}

/* Reloads channels and webhooks; a bad file is refused whole. */
static void
on_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct env *env = arg;
	struct config_errors errs = { 0 };
	struct config *nc, *old = env->cfg;

	sdnotify_reloading();
	log_info("reloading", "file=\"%s\"", env->config_path);
	if ((nc = config_load(env->config_path, &errs)) == NULL) {
		log_config_errors(env->config_path, &errs);
		log_errorx("reload refused, the running configuration is kept", "errors=%zu",
		    errs.n);
		config_errors_free(&errs);
		sdnotify_ready();
		return;
	}
	if (restart_needed(old, nc))
		log_warnx("changes to listen, max_connections, read_timeout, trusted_proxies, "
			  "proxy_protocol, max_connections_per_ip, header_timeout, dedup_ttl, "
			  "[redis] "
			  "or [stream] take effect on restart",
		    "");
	env->cfg = nc;
	config_set_masking(nc); /* before the old one goes */
	config_free(old);
	log_set_level((enum log_level)nc->log_level);
	metrics_touch_channels(env->metrics, nc);
	log_info("reloaded", "channels=%zu webhooks=%zu", nc->nchannels, nc->nwebhooks);
	sdnotify_ready();
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	sdnotify_watchdog();
}

/* The info and debug lines of a loop turn, written together at its end
 * (log.h): one write instead of one per line, each waking journald. An
 * event activated during a turn runs in that turn, after the callbacks
 * already active (store.c's flush_ev does the same for Redis commands). */
static void
on_log_flush(evutil_socket_t fd, short what, void *arg)
{
	log_flush();
}

static void
log_arm(void *arg)
{
	event_active(arg, EV_TIMEOUT, 0);
}

static int
setup_signals(struct env *env)
{
	uint64_t wd = sdnotify_watchdog_usec();

	signal(SIGPIPE, SIG_IGN);
	env->ev_sigterm = evsignal_new(env->base, SIGTERM, on_sigterm, env);
	env->ev_sigint = evsignal_new(env->base, SIGINT, on_sigterm, env);
	env->ev_sighup = evsignal_new(env->base, SIGHUP, on_sighup, env);
	env->ev_shutdown = evtimer_new(env->base, on_shutdown_timeout, env);
	env->ev_drain = event_new(env->base, -1, EV_PERSIST, on_drain, env);
	if (env->ev_sigterm == NULL || env->ev_sigint == NULL || env->ev_sighup == NULL ||
	    env->ev_shutdown == NULL || env->ev_drain == NULL ||
	    event_add(env->ev_sigterm, NULL) == -1 || event_add(env->ev_sigint, NULL) == -1 ||
	    event_add(env->ev_sighup, NULL) == -1)
		return -1;
	if (wd > 0) {
		/* Keep-alives at half the interval, from the loop itself: a
		 * stuck loop misses them and systemd restarts us. */
		struct timeval tv = { (time_t)(wd / 2000000), (suseconds_t)(wd / 2 % 1000000) };

		env->ev_watchdog = event_new(env->base, -1, EV_PERSIST, on_watchdog, env);
		if (env->ev_watchdog == NULL || event_add(env->ev_watchdog, &tv) == -1)
			return -1;
	}
	return 0;
}

static void
env_free(struct env *env)
{
	/* Callbacks still waiting are answered 503; delivery outcomes not
	 * recorded leave their leases to expire. */
	store_free(env->store);
	env->store = NULL;
	confirm_free(env->confirmer); /* before httpc_free: it cancels its calls */
	env->confirmer = NULL;
	payments_free(env->payments); /* the same */
	env->payments = NULL;
	httpc_free(env->httpc); /* before event_base_free: it owns events */
	env->httpc = NULL;
	deliver_free(env->deliver);
	env->deliver = NULL;
	poll_free(env->poller);
	env->poller = NULL;
	admin_free(env->admin);
	env->admin = NULL;
	ingest_free(env->ingest);
	env->ingest = NULL;
	if (env->ev_sigterm)
		event_free(env->ev_sigterm);
	if (env->ev_sigint)
		event_free(env->ev_sigint);
	if (env->ev_sighup)
		event_free(env->ev_sighup);
	if (env->ev_shutdown)
		event_free(env->ev_shutdown);
	if (env->ev_drain)
		event_free(env->ev_drain);
	if (env->ev_watchdog)
		event_free(env->ev_watchdog);
	metrics_free(env->metrics);
	config_free(env->cfg);
	if (env->base)
		event_base_free(env->base);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct config_errors errs = { 0 };
	struct event *log_ev = NULL;
	struct env env;
	const char *path = NULL;
	bool check_only = false;
	char why[256];
	int ch, rc = 1;

	memset(&env, 0, sizeof(env));
	/* Before any secret is read: a core dump would hold every key, and
	 * a non-dumpable process cannot be ptraced by its own user either. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		log_warnx("cannot disable core dumps", "error=\"%s\"", strerror(errno));
	while ((ch = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check_only = true;
			break;
		case 'V':
			printf("payrelayd %s\n", PAYRELAY_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (path == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	/* Fail closed (SPEC §2.5): without every algorithm, no callback could
	 * be judged, so do not start at all. */
	if (crypto_self_test(why, sizeof(why)) == -1) {
		fprintf(stderr, "payrelayd: crypto self-test failed: %s; refusing to start\n", why);
		return 2;
	}
	env.config_path = path;
	env.cfg = config_load(path, &errs);
	if (check_only) {
		print_config_errors(stderr, path, &errs);
		if (env.cfg != NULL)
			printf("%s: ok\n", path);
		rc = env.cfg != NULL ? 0 : 2;
		config_errors_free(&errs);
		config_free(env.cfg);
		return rc;
	}
	if (env.cfg == NULL) {
		print_config_errors(stderr, path, &errs);
		config_errors_free(&errs);
		return 2;
	}
	log_set_level((enum log_level)env.cfg->log_level);
	config_set_masking(env.cfg);
	log_info("starting", "version=%s config=\"%s\" channels=%zu", PAYRELAY_VERSION, path,
	    env.cfg->nchannels);

	instance_id(env.instance, sizeof(env.instance));
	if ((env.metrics = metrics_new()) == NULL)
		fatalx("out of memory", "");
	metrics_touch_channels(env.metrics, env.cfg);
	if ((env.base = event_loop_new()) == NULL)
		fatalx("cannot create the event loop", "");
	if (setup_signals(&env) == -1)
		fatalx("cannot set up signals", "");
	if ((log_ev = event_new(env.base, -1, 0, on_log_flush, NULL)) == NULL)
		fatalx("out of memory", "");
	if ((env.ingest = ingest_new(&env)) == NULL)
		goto out;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("cannot initialise libcurl", "");
	if ((env.httpc = httpc_new(env.base, "payrelay/" PAYRELAY_VERSION)) == NULL ||
	    (env.deliver = deliver_new(&env)) == NULL || (env.poller = poll_new(&env)) == NULL ||
	    (env.confirmer = confirm_new(&env)) == NULL ||
	    (env.payments = payments_new(&env)) == NULL) {
		log_errorx("cannot set up deliveries and polling", "");
		goto out;
	}
	if ((env.admin = admin_new(&env)) == NULL)
		goto out;
	if ((env.store = store_new(env.base, env.cfg, on_store_ready, &env)) == NULL) {
		log_errorx("cannot set up Redis", "");
		goto out;
	}
	log_defer(log_arm, log_ev);
	event_base_dispatch(env.base);
	/* Writes what the last turn left; the teardown's lines go at once. */
	log_defer(NULL, NULL);
	/* Freeing the signal events restores the default action: a second
	 * SIGTERM must not kill the teardown. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	rc = 0;
	log_info("stopped", "recorded=%llu duplicates=%llu refused=%llu unavailable=%llu",
	    (unsigned long long)ingest_total(env.ingest, INGEST_RECORDED),
	    (unsigned long long)ingest_total(env.ingest, INGEST_DUPLICATE),
	    (unsigned long long)ingest_total(env.ingest, INGEST_REFUSED),
	    (unsigned long long)ingest_total(env.ingest, INGEST_UNAVAILABLE));
out:
	if (log_ev != NULL)
		event_free(log_ev); /* deferral is off: nothing arms it any more */
	env_free(&env);
	curl_global_cleanup();
	return rc;
}
