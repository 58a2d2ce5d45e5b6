/* Redis: the one atomic recording step of SPEC §3 (a Lua script loaded
 * once, run with EVALSHA), deliveries, orders and polls, and the admin
 * API's reads, over hiredis async on the daemon's event loop. The only door
 * to Redis: callers get typed results, never a hiredis reply. The scripts
 * are the files of src/store/lua/; the files behind this header and the key layout:
 * docs/redis.md. */
#ifndef PAYRELAY_STORE_H
#define PAYRELAY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "util.h"

struct event_base;
struct config;
struct store;

enum store_result {
	STORE_NEW,     /* recorded now */
	STORE_DUP,     /* recorded before: nothing new was written */
	STORE_ERROR,   /* Redis answered with an error, or the connection dropped */
	STORE_TIMEOUT, /* no answer within [redis] timeout_ms (it may still apply) */
	/* recorded (or a duplicate), but WAIT saw fewer than [redis]
	 * min_replicas replicas take it in time */
	STORE_UNREPLICATED,
};

/* One webhook that may get a delivery of the event. */
struct record_hook {
	const char *name;
	bool match_paid;        /* wants the event as recorded by the caller */
	bool match_mismatch;    /* wants it if it turns out to be order.amount_mismatch */
	int64_t first_delay_ms; /* the schedule's first delay (usually 0) */
	/* > 0: claim at record: if made, the delivery is made already leased to
	 * record.owner until then (and named in the answer); 0: made due */
	int64_t lease_until_ms;
};

struct record {
	const struct event *ev;
	const char *json; /* event_to_json(ev): a payment may become order.amount_mismatch */
	const struct record_hook *hooks;
	size_t nhooks;
	const char *owner; /* the lease owner (instance id) when a hook has lease_until_ms */
};

/* A delivery the record step made already claimed (record_hook.lease_until_ms). */
struct store_record_claim {
	size_t hook;    /* its index in record.hooks */
	const char *id; /* the delivery id */
};

/* What the record step made of a new event's deliveries. */
struct store_recorded {
	size_t made;                             /* deliveries made (claimed or due) */
	const struct store_record_claim *claims; /* those claimed at record */
	size_t nclaims;
	/* The stored event JSON when the step rewrote the caller's (an amount
	 * mismatch, a repeat payment) and claimed a delivery; else NULL: the
	 * caller's JSON is what was stored, byte for byte. */
	const char *body;
	size_t body_len;
};

/* `type` is the event type that was recorded (order.paid may have become
 * order.amount_mismatch); NULL unless r is STORE_NEW. `first_trade_no` is
 * NULL unless the event was recorded (STORE_NEW) as a repeat payment: then it
 * is the gateway trade id of the order's first payment. `rd` is NULL unless
 * the event was recorded now (STORE_NEW, or STORE_UNREPLICATED of a new
 * event): its deliveries. All live during the call only. */
typedef void store_record_cb(void *arg, enum store_result r, const char *type,
    const char *first_trade_no, const struct store_recorded *rd);
/* Called each time the connection becomes ready (script loaded). */
typedef void store_ready_cb(void *arg);

/* Copies what it needs of cfg ([redis], [stream], dedup_ttl): changing
 * those needs a restart. Connects at once and keeps reconnecting. */
struct store *store_new(struct event_base *base, const struct config *cfg, store_ready_cb *ready_cb,
    void *ready_arg);
/* Closes the connection; pending callbacks get STORE_ERROR. NULL is ok. */
void store_free(struct store *s);
bool store_ready(const struct store *s);
/* Requests sent and not yet answered or timed out. */
size_t store_in_flight(const struct store *s);

/* Runs the recording step. Returns -1 (cb is not called) when Redis is not
 * ready; otherwise 0, and cb is called exactly once, later. Copies
 * everything it needs from r. */
int store_record(struct store *s, const struct record *r, store_record_cb *cb, void *arg) WUR;

/* Deliveries (docs/delivery.md). */

/* One delivery claimed with a lease; strings live during the callback. */
struct store_claimed {
	const char *id;
	const char *event_id;
	const char *body; /* the event JSON */
	size_t body_len;
	long attempts; /* attempts already made */
};

/* rc is 0 with the claimed deliveries (maybe none), or -1 when Redis failed. */
typedef void store_claim_cb(void *arg, int rc, const struct store_claimed *items, size_t n);
/* rc is 0 with the script's short answer, or -1 when Redis failed. */
typedef void store_done_cb(void *arg, int rc, const char *answer);

/* Claims up to `max` due deliveries of `webhook`, leased to `owner` until
 * lease_until_ms. Returns -1 (cb not called) when Redis is not ready. */
int store_claim(struct store *s, const char *webhook, int max, const char *owner,
    int64_t lease_until_ms, store_claim_cb *cb, void *arg) WUR;

struct store_outcome {
	const char *webhook;
	const char *id;
	const char *owner;
	const char *outcome; /* "ok", "retry", "dead" or "probe" (a failed probe) */
	int64_t next_due_ms; /* for retry and probe */
	long http_status;    /* 0 when no answer */
	const char *error;   /* short text, "" when none */
	int64_t retention_s; /* how long a delivered hash is kept ([daemon] delivery_retention) */
};

/* rc is 0 with one answer per outcome, in order ("ok", "retry", "dead",
 * "probe": stored; "settled": the delivery was settled already, left
 * alone; "lost": a failure after another instance took the lease,
 * dropped), living during the callback; or -1 when Redis failed. */
typedef void store_finish_cb(void *arg, int rc, const char *const *answers, size_t n);

/* Records the outcomes of n (>= 1) attempts in one call, all of one owner
 * and with o[0]'s retention_s. cb may be NULL. Returns -1 (cb not called)
 * when Redis is not ready. */
int store_finish(struct store *s, const struct store_outcome *o, size_t n, store_finish_cb *cb,
    void *arg) WUR;
/* Gives a claimed delivery back, due now, no attempt spent. */
int store_release(struct store *s, const char *webhook, const char *id, const char *owner,
    store_done_cb *cb, void *arg) WUR;

/* Orders and polls (docs/reconciliation.md). Each calls cb once, later,
 * or returns -1 (cb not called) when Redis is not ready. Strings handed to
 * a callback live during the call only. */

/* A field and its value: of a hash (HGETALL), a stream entry, a row. */
struct store_field {
	const char *name;
	const char *value;
	size_t value_len;
};
/* rc is 0 with the fields (none: no such key), or -1 when Redis failed. */
typedef void store_fields_cb(void *arg, int rc, const struct store_field *fields, size_t n);

enum store_order_reg {
	STORE_ORDER_FAILED,   /* Redis failed or timed out */
	STORE_ORDER_CREATED,  /* registered now */
	STORE_ORDER_EXISTS,   /* registered before, with the same amount or none */
	STORE_ORDER_CONFLICT, /* registered before with another amount */
};
/* `state` is the order's ("" when unknown), `registered_fen` the amount it
 * was registered with (CONFLICT). */
typedef void store_order_register_cb(void *arg, enum store_order_reg r, const char *state,
    int64_t registered_fen);
/* first_poll_ms 0: the channel is never polled. amount_fen -1: the amount
 * is not known (no amount check; a later registration with one sets it). */
int store_order_register(struct store *s, const char *channel, const char *out_trade_no,
    int64_t amount_fen, int64_t expires_ms, int64_t first_poll_ms, store_order_register_cb *cb,
    void *arg) WUR;

/* --- creating payments (SPEC §10.1, docs/payments.md) --------------------- */

enum store_payment_what {
	STORE_PAY_FAILED,   /* Redis failed or timed out */
	STORE_PAY_GO,       /* begin: the creation lock is ours, call the gateway */
	STORE_PAY_CREATED,  /* register: stored and registered now */
	STORE_PAY_DONE,     /* created before with the same amount: its first answer */
	STORE_PAY_CONFLICT, /* created or registered with another amount */
	STORE_PAY_SETTLED,  /* begin: registered, no longer pending, never created here */
	STORE_PAY_BUSY,     /* begin: another creation of the order holds the lock */
};
/* What the order hash holds (strings living during the callback; "" when
 * not there): state and amount_fen always, the rest with STORE_PAY_DONE. */
struct store_payment {
	const char *state;
	const char *amount_fen; /* "" when registered without an amount */
	const char *pay_kind;   /* pay_url, qrcode, urlscheme */
	const char *pay_target;
	const char *gateway_trade_no;
};
typedef void store_payment_cb(void *arg, enum store_payment_what what,
    const struct store_payment *p);
/* Looks for an earlier creation of the order and takes the creation lock
 * (`owner` for `lock_ms`) when there is none: STORE_PAY_GO, DONE,
 * CONFLICT, SETTLED or BUSY. amount_fen -1: the payment names no amount. */
int store_payment_begin(struct store *s, const char *channel, const char *out_trade_no,
    int64_t amount_fen, const char *owner, int64_t lock_ms, store_payment_cb *cb, void *arg) WUR;
/* A created payment, to store with its order. */
struct store_payment_new {
	const char *channel;
	const char *out_trade_no;
	int64_t amount_fen; /* -1: none */
	int64_t expires_ms;
	int64_t first_poll_ms; /* 0: the channel is never polled */
	const char *pay_kind;
	const char *pay_target;
	const char *gateway_trade_no; /* NULL: none */
	const char *return_to;        /* NULL: none */
	const char *pay_mode;         /* api, redirect */
	const char *owner;            /* of the creation lock, released here */
};
/* Stores the first answer and registers the order (SPEC §6) in one step:
 * STORE_PAY_CREATED, DONE (another creation stored first; its answer in
 * p) or CONFLICT. */
int store_payment_register(struct store *s, const struct store_payment_new *n, store_payment_cb *cb,
    void *arg) WUR;
/* Gives the creation lock back when it is still `owner`'s (nothing was
 * stored). No answer: a lock left behind expires by itself. */
int store_payment_unlock(struct store *s, const char *channel, const char *out_trade_no,
    const char *owner) WUR;

/* One order claimed for a poll, or expired unpaid there. */
struct store_poll_claimed {
	const char *out_trade_no;
	bool expired; /* past its expiry: expired now, not to be polled */
	long polls;   /* polls made so far */
};
/* rc is 0 with the claimed orders (maybe none), or -1 when Redis failed. */
typedef void store_poll_claim_cb(void *arg, int rc, const struct store_poll_claimed *items,
    size_t n);
/* Claims due orders of a channel (and expires those past their time),
 * within `rate` queries per second shared by every instance. */
int store_poll_claim(struct store *s, const char *channel, int max, int rate, const char *owner,
    int64_t lease_until_ms, store_poll_claim_cb *cb, void *arg) WUR;

enum store_poll_one {
	STORE_POLL_ONE_FAILED,  /* Redis failed or timed out */
	STORE_POLL_ONE_MISSING, /* no such order */
	STORE_POLL_ONE_SETTLED, /* not pending: `state` says what it is */
	STORE_POLL_ONE_BUSY,    /* another poll holds its lease */
	STORE_POLL_ONE_CLAIMED, /* leased to the caller: poll it now */
};
/* `state` is the settled order's state ("" when unknown), NULL otherwise;
 * `polls` the polls made so far (CLAIMED). */
typedef void store_poll_one_cb(void *arg, enum store_poll_one r, const char *state, long polls);
int store_poll_one(struct store *s, const char *channel, const char *out_trade_no,
    const char *owner, int64_t lease_until_ms, store_poll_one_cb *cb, void *arg) WUR;

/* `state` is the order's state once the outcome is stored ("pending",
 * "paid", "missing", "lost", ...), "unknown" when Redis failed. */
typedef void store_poll_done_cb(void *arg, const char *state);
int store_poll_done(struct store *s, const char *channel, const char *out_trade_no,
    const char *owner, const char *result, int64_t next_poll_ms, const char *detail,
    store_poll_done_cb *cb, void *arg) WUR;
/* HGETALL of the order: no fields when there is no such order. */
int store_order_get(struct store *s, const char *channel, const char *out_trade_no,
    store_fields_cb *cb, void *arg) WUR;
/* rc is 0 with the order's return_to (NULL: no such order, or none was
 * given at creation), or -1 when Redis failed. The string lives during the
 * call only. */
typedef void store_return_to_cb(void *arg, int rc, const char *return_to);
/* HGET of the order's `return_to` field (written by POST /v1/payments;
 * SPEC §10.2): where the payer is sent back. */
int store_order_return_to(struct store *s, const char *channel, const char *out_trade_no,
    store_return_to_cb *cb, void *arg) WUR;
/* `locked`: this instance took the channel's sweep key and sweeps now;
 * false when another one holds it, or Redis failed. */
typedef void store_sweep_lock_cb(void *arg, bool locked);
/* SET NX PX on the channel's sweep key. */
int store_sweep_lock(struct store *s, const char *channel, const char *owner, int64_t ms,
    store_sweep_lock_cb *cb, void *arg) WUR;

/* Operations (admin API). */

enum store_event_get {
	STORE_EVENT_FAILED,  /* Redis failed or timed out */
	STORE_EVENT_MISSING, /* never recorded, or older than dedup_ttl */
	STORE_EVENT_TRIMMED, /* recorded, but trimmed from the stream */
	STORE_EVENT_FOUND,
};
/* FOUND: the stream entry's id, and its event JSON (NULL when it has none). */
typedef void store_event_get_cb(void *arg, enum store_event_get r, const char *stream_id,
    const char *event, size_t event_len);
int store_event_get(struct store *s, const char *event_id, store_event_get_cb *cb, void *arg) WUR;

/* A delivery hash: its id, then its fields (the `id` field too). */
struct store_delivery_row {
	const char *id;
	const struct store_field *fields;
	size_t nfields;
};
/* rc is 0 with the rows (maybe none), or -1 when Redis failed. */
typedef void store_deliveries_cb(void *arg, int rc, const struct store_delivery_row *rows,
    size_t n);
int store_deliveries_list(struct store *s, const char *webhook, bool dead, int limit,
    store_deliveries_cb *cb, void *arg) WUR;

struct store_replay_req {
	const char *mode;   /* "one", "dead" or "range" */
	const char *target; /* the delivery id (one) or the webhook (dead, range) */
	long max;           /* most deliveries made at once */
	int64_t since_ms, until_ms;
	const char *events;   /* range: ",order.paid,...," */
	const char *channels; /* range: ",a,b," or "*" */
	int64_t retention_s;  /* how long a replayed dead hash is kept (delivery_retention) */
};

/* rc is -1 when Redis failed. Else `n` is the deliveries made, and `text`
 * the new delivery's id (mode one; may be NULL); or `n` is negative and
 * `text` says why the replay was refused (may be NULL). */
typedef void store_replay_cb(void *arg, int rc, long long n, const char *text);
int store_replay(struct store *s, const struct store_replay_req *q, store_replay_cb *cb,
    void *arg) WUR;

/* rc is 0 with the n numbers, or -1 when Redis failed. */
typedef void store_numbers_cb(void *arg, int rc, const long long *v, size_t n);
/* ZCARD of each key (the prefix is added), in one answer. */
int store_counts(struct store *s, const char *const *keys, size_t nkeys, store_numbers_cb *cb,
    void *arg) WUR;

/* One event of an order's index: its stream id and JSON are "" (len 0)
 * when the stream trimmed it. */
struct store_found_event {
	const char *id;
	const char *stream_id;
	size_t stream_id_len;
	const char *event;
	size_t event_len;
};
/* rc is 0 with the events (maybe none), or -1 when Redis failed. */
typedef void store_events_find_cb(void *arg, int rc, const struct store_found_event *ev, size_t n);
/* Every event recorded for merchant order `out_trade_no` of each channel
 * of `channels` (the order's event index, living dedup_ttl), at most `max`
 * per channel, oldest first per channel. */
int store_events_find(struct store *s, const char *const *channels, size_t nchannels,
    const char *out_trade_no, int max, store_events_find_cb *cb, void *arg) WUR;

/* A stream entry: its id and its fields. */
struct store_entry {
	const char *id;
	const struct store_field *fields;
	size_t nfields;
};
/* rc is 0 with the entries (maybe none), or -1 when Redis failed. */
typedef void store_entries_cb(void *arg, int rc, const struct store_entry *e, size_t n);
/* The stream after entry `after` (XREAD COUNT `count`, never BLOCK: the
 * connection is shared with every callback), or with `after` NULL its newest
 * entry (XREVRANGE + - COUNT 1). */
int store_stream_read(struct store *s, const char *after, int count, store_entries_cb *cb,
    void *arg) WUR;
/* The deliveries the record step made for one event, as rows of
 * store_deliveries_list. */
int store_event_deliveries(struct store *s, const char *event_id, store_deliveries_cb *cb,
    void *arg) WUR;
/* HGETALL of one delivery hash: no fields when there is no such delivery. */
int store_delivery_get(struct store *s, const char *id, store_fields_cb *cb, void *arg) WUR;
/* `info` is INFO memory's text (used_memory, maxmemory), NULL when Redis
 * failed. */
typedef void store_info_cb(void *arg, const char *info);
/* INFO memory, for /metrics. */
int store_memory(struct store *s, store_info_cb *cb, void *arg) WUR;
/* rc is 0 with the deliveries purged and whether some that died before
 * before_ms are left, or -1 when Redis failed. */
typedef void store_purge_cb(void *arg, int rc, long long purged, bool more);
/* Deletes, in one bounded batch of at most `max`, the dead deliveries of
 * `webhook` that died before before_ms, with every index entry naming them. */
int store_purge_dead(struct store *s, const char *webhook, int64_t before_ms, long max,
    store_purge_cb *cb, void *arg) WUR;
/* DBSIZE, the stream's XLEN, then ZCARD of each key (the prefix is added),
 * in one answer: O(1) each, for /metrics. */
int store_sizes(struct store *s, const char *const *keys, size_t nkeys, store_numbers_cb *cb,
    void *arg) WUR;
/* Requests that failed or timed out since start. */
uint64_t store_errors(const struct store *s);
/* Commands are written at the end of the loop turn that queued them, all
 * at once: *flushes counts those writes, *waits the times the socket could
 * not take everything and the rest waited for a later turn. */
void store_write_stats(const struct store *s, uint64_t *flushes, uint64_t *waits);
/* The record step's script calls so far (*calls) and the record steps
 * they carried (*records): the steps of one loop turn go in one call. */
void store_record_stats(const struct store *s, uint64_t *calls, uint64_t *records);
/* True while connected to the master (with sentinels: ROLE said so). */
bool store_master_known(const struct store *s);
/* Times the sentinels named a master at another address than the one
 * before (failovers, or manual switches), since start. */
uint64_t store_failovers(const struct store *s);

/* Refunds (SPEC §10.3, docs/payments.md). Each calls cb once, later, or
 * returns -1 (cb not called) when Redis is not ready. */

struct store_refund_req {
	const char *channel;
	const char *refund_id;
	const char *out_trade_no;  /* the order asked for, or NULL */
	const char *trade_no;      /* or the payment's gateway trade id, or NULL */
	const char *paid_event_id; /* with trade_no: the id its paid event has */
	int64_t amount_fen;
};

enum store_refund_begin {
	STORE_REFUND_FAILED,   /* Redis failed or timed out */
	STORE_REFUND_EXISTS,   /* the refund_id was used before: info says how */
	STORE_REFUND_NO_ORDER, /* no recorded payment, no registered order */
	STORE_REFUND_UNPAID,   /* a registered order, no recorded payment (info.state) */
	STORE_REFUND_TRIMMED,  /* the payment's event is no longer in the stream */
	STORE_REFUND_OVER,     /* more than paid_fen - refunded_fen: nothing claimed */
	STORE_REFUND_CLAIMED,  /* pending now: ask the gateway, then store_refund_finish */
};

/* Strings live during the callback only; "" when the answer has none. */
struct store_refund_info {
	const char *state; /* EXISTS: pending, done or unknown; UNPAID: the order's */
	const char *out_trade_no, *trade_no;
	int64_t amount_fen;   /* EXISTS: the refund's */
	int64_t paid_fen;     /* what the payment paid */
	int64_t refunded_fen; /* refunded or being refunded before this one */
	int64_t created_ms;   /* EXISTS, CLAIMED */
	const char *answer;   /* EXISTS: the answer stored by store_refund_finish */
	size_t answer_len;
};
typedef void store_refund_begin_cb(void *arg, enum store_refund_begin r,
    const struct store_refund_info *info);
/* Finds the payment and claims the refund of amount_fen, in one step. */
int store_refund_begin(struct store *s, const struct store_refund_req *q, store_refund_begin_cb *cb,
    void *arg) WUR;

struct store_refund_outcome {
	const char *channel, *refund_id, *trade_no;
	const char *outcome;  /* "done", "unknown" or "refused" (the claim is dropped) */
	const char *answer;   /* the answer JSON a repeat gets */
	const char *event_id; /* the order.refunded event's, or NULL */
};
/* cb (may be NULL) gets "ok", or "missing" when the claim expired. */
int store_refund_finish(struct store *s, const struct store_refund_outcome *o, store_done_cb *cb,
    void *arg) WUR;

#endif
