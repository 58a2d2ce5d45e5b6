/* The store's engine, shared by its domain files (store_record.c,
 * store_deliver.c, store_orders.c, store_ops.c, store_refunds.c) and nobody else: the
 * connection and its requests. A domain file builds a request with
 * store_req_new and the store_req_* argument helpers, sends it with
 * store_req_send, and decodes its reply in its done function, so hiredis
 * stays inside the store. */
#ifndef PAYRELAY_STORE_INT_H
#define PAYRELAY_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "store.h"
#include "util.h"

/* delivery_retention's default, for a caller that gives none. */
#define STORE_RETENTION 604800

/* The scripts of src/store/lua/ (the table in store.c), then plain commands. */
enum script {
	SCRIPT_RECORD,
	SCRIPT_CLAIM,
	SCRIPT_FINISH,
	SCRIPT_RELEASE,
	SCRIPT_ORDER_REGISTER,
	SCRIPT_POLL_CLAIM,
	SCRIPT_POLL_ONE,
	SCRIPT_POLL_DONE,
	SCRIPT_EVENT_GET,
	SCRIPT_DELIVERIES_LIST,
	SCRIPT_REPLAY,
	SCRIPT_EVENTS_FIND,
	SCRIPT_EVENT_DELIVERIES,
	SCRIPT_PURGE,
	SCRIPT_SIZES,
	SCRIPT_REFUND_BEGIN,
	SCRIPT_REFUND_FINISH,
	/* SPEC §10.1: creating payments */
	SCRIPT_PAYMENT_BEGIN,
	SCRIPT_PAYMENT_REGISTER,
	SCRIPT_PAYMENT_UNLOCK,
	NSCRIPTS,
	SCRIPT_NONE = NSCRIPTS, /* a plain command */
};

struct store {
	struct event_base *base;
	redisAsyncContext *ctx; /* NULL while disconnected */
	bool connected;         /* TCP/unix connection up */
	bool ready;             /* authenticated and every script loaded */
	bool closing;
	uint64_t errors; /* requests that failed or timed out */
	char sha[NSCRIPTS][41];
	int nloaded;
	struct event *reconnect_ev;
	struct event *connect_timeout_ev;
	int backoff_ms;
	int backoff_max_ms;
	size_t in_flight;
	store_ready_cb *ready_cb;
	void *ready_arg;
	/* copied from the config */
	struct netaddr addr;
	int db;
	char *user;
	char *password;
	char *prefix;
	char *stream_key;
	char maxlen[24];
	char dedup_ttl[24];
	int timeout_ms;
	int req_timeout_ms; /* timeout_ms, plus replica_timeout_ms when WAITs may queue ahead */
	/* SPEC §3.2, Redis's Sentinel client guide. With no sentinels, addr is
	 * the url's; with them it is what the last sentinel named. */
	struct netaddr *sentinels; /* the last one that answered comes first */
	size_t nsentinels;
	char *master_name;
	char *sentinel_password;
	redisAsyncContext *sq; /* the sentinel being asked, or NULL */
	size_t sq_idx;         /* its index in sentinels */
	struct event *sq_ev;   /* its deadline, or (sq NULL) "ask sq_idx now" */
	bool role_ok;          /* ROLE said master on this connection (no sentinels: true) */
	bool have_master;      /* last_master is set */
	struct netaddr last_master;
	uint64_t failovers; /* a sentinel named another master than the previous one */
	int min_replicas;   /* WAIT after each record step; 0: never */
	int replica_timeout_ms;
	bool wait_out;               /* a WAIT is out (it blocks the connection) */
	struct store_req *wait_sent; /* the records it answers, by r->next */
	struct store_req *wait_next; /* records for the next WAIT */
	/* The commands of one loop turn are written at its end (store.c's
	 * wrapped adapter, struct store_ev), not in the next turn. */
	struct store_ev *ev; /* the wrapper of ctx's adapter, or NULL */
	struct event *flush_ev;
	bool flush_pending;   /* flush_ev is active */
	bool flushing;        /* inside redisAsyncHandleWrite from flush_ev */
	uint64_t flushes;     /* flushes that had commands to write */
	uint64_t write_waits; /* writes the socket could not take whole: EV_WRITE */
	/* The record steps of one loop turn, sent in one script call per
	 * STORE_RECORD_BATCH at its end (store_flush_cb), oldest first. */
	struct store_req *batch;
	struct store_req **batch_tail;
	size_t nbatch;
	uint64_t batch_seq;  /* script calls of the record step sent */
	uint64_t batch_recs; /* records they carried */
	uint64_t wait_seq;   /* the call whose answer sent the WAIT out, or 0 */
	/* Finished requests kept for reuse (with their buffers and timer): a
	 * callback costs no allocation here once the store is warm. */
	struct store_req *spare;
	size_t nspare;
};

struct store_req;
/* Called once per request: rep is NULL on a timeout (r->timed_out), a
 * dropped connection or an unusable reply. */
typedef void req_done_fn(struct store_req *r, const redisReply *rep);

struct store_req {
	struct store *s;
	enum script script;
	req_done_fn *done;
	union {
		store_record_cb *record;
		store_claim_cb *claim;
		store_done_cb *done;
		store_finish_cb *finish;
		store_poll_claim_cb *poll_claim;
		store_poll_one_cb *poll_one;
		store_poll_done_cb *poll_done;
		store_sweep_lock_cb *sweep_lock;
		store_order_register_cb *order_register;
		store_fields_cb *fields;
		store_return_to_cb *return_to;
		store_event_get_cb *event_get;
		store_deliveries_cb *deliveries;
		store_replay_cb *replay;
		store_numbers_cb *numbers;
		store_events_find_cb *events_find;
		store_entries_cb *entries;
		store_info_cb *info;
		store_purge_cb *purge;
		store_refund_begin_cb *refund_begin;
		store_payment_cb *payment;
	} cb; /* the caller's callback, by script */
	void *arg;
	struct event *timer;
	bool answered; /* done was called: only the reply is awaited */
	bool timed_out;
	bool retried;     /* NOSCRIPT was answered once already */
	struct sbuf args; /* every argument's bytes, back to back */
	int argc;
	const char **argv; /* into args, once it is complete */
	size_t *offs;
	size_t *lens;
	size_t maxargs;         /* room in argv, offs and lens */
	struct store_req *next; /* in the spare list */
	/* With min_replicas, once the record step answered: its answer
	 * (wait_result; in args as store_record_keep left it), waiting for the
	 * WAIT in wait_sent or wait_next (by next). */
	bool waiting;
	enum store_result wait_result;
	size_t wait_first_off;
	size_t wait_made;                     /* deliveries made */
	size_t wait_body_off, wait_body_len;  /* the rewritten body (0: none) */
	size_t wait_claims_off, wait_nclaims; /* the deliveries claimed at record */
	/* A record step (store_batch_add): its first argument is its webhook
	 * count, then its nkeys keys, then its arguments. */
	int nkeys;
};

/* A request for `script` with room for `maxargs` arguments after EVALSHA,
 * sha and the key count; NULL when Redis is not ready or out of memory. */
struct store_req *store_req_new(struct store *s, enum script script, size_t maxargs, size_t bytes,
    req_done_fn *done, void *arg);
/* Done with r: kept as a spare when it is whole and not too big. */
void store_req_free(struct store_req *r);
/* Append the next argument: n bytes of data, a string, the strings up to
 * NULL (key names, built without printf), a number. Each returns 0 or -1;
 * callers OR the results and hand them to store_req_send. */
int store_req_arg(struct store_req *r, const char *data, size_t n);
int store_req_args(struct store_req *r, const char *s);
int store_req_cat(struct store_req *r, ...) __attribute__((sentinel));
int store_req_argll(struct store_req *r, long long v);
/* Starts EVALSHA sha nkeys: the first three arguments. */
int store_req_begin(struct store_req *r, int nkeys);
/* Sends r (built without errors when rc is 0) or frees it. Returns 0 or -1
 * (done is not called then). */
int store_req_send(struct store_req *r, int rc) WUR;
/* Queues record step r (built without errors when rc is 0; see nkeys) for
 * the one script call that carries every record step of this loop turn,
 * or frees it. Returns 0 or -1 (done is not called then). */
int store_batch_add(struct store_req *r, int rc) WUR;
/* The field/value pairs of array `a` from element `start` into *out (the
 * caller frees it), *n of them; a pair whose name or value is no string is
 * left out, and `a` no array has none. -1 when out of memory. */
int store_fields_decode(const redisReply *a, size_t start, struct store_field **out, size_t *n) WUR;

/* store_record.c: src/store/lua/record.lua's answer, {"new", stream id, type,
 * deliveries, first trade id or "", {hook index, delivery id, ...} claimed
 * at record, rewritten body or ""} or {"dup", stream id}: STORE_NEW (with
 * *type and *first, "" when none, living as long as rep), STORE_DUP (both
 * ""), or STORE_ERROR when rep is no such answer. */
enum store_result store_record_answer(const redisReply *rep, const char **type, const char **first);
/* store_record.c: keeps a record answer (new or duplicate) in r->args for
 * store_record_wait_done, while its WAIT is out. Returns 0 or -1. */
int store_record_keep(struct store_req *r, const redisReply *rep) WUR;
/* store_record.c: the record step's answer, once the WAIT after it
 * answered (rep: its integer) or not (NULL). */
void store_record_wait_done(struct store_req *r, const redisReply *rep);

#endif
