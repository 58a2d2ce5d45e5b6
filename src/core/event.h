/* The normalized order event of SPEC §4, shared by every family, the stream,
 * the webhooks and the poller. */
#ifndef PAYRELAY_EVENT_H
#define PAYRELAY_EVENT_H

#include <stdbool.h>
#include <stdint.h>

#include "form.h"
#include "util.h"

#define EVENT_ID_LEN 36 /* "evt_" + 32 hex */

enum event_type {
	EVENT_PAID,            /* order.paid */
	EVENT_STATUS,          /* order.status: verified, not paid */
	EVENT_AMOUNT_MISMATCH, /* order.amount_mismatch: paid, but not the registered amount */
	EVENT_REFUNDED,        /* order.refunded: the gateway refunded (POST /v1/refunds) */
};
/* Every type is below this: loops over the types, bits of webhook filters. */
#define EVENT_NTYPES (EVENT_REFUNDED + 1)

/* Where an event was found; never part of its id, so a payment found by
 * the payer's return (SOURCE_RETURN) and then by its notify is one event.
 * SOURCE_ADMIN: made by an admin API call (a refund), not received. */
enum event_source { SOURCE_CALLBACK, SOURCE_POLL, SOURCE_REPLAY, SOURCE_ADMIN, SOURCE_RETURN };

struct channel;

/* Every string is borrowed: from the channel config, from the params the
 * event was verified from, or static. The event lives no longer than those. */
struct event {
	char id[EVENT_ID_LEN + 1];
	enum event_type type;
	enum event_source source;
	const char *channel;
	const char *family;
	const char *merchant_id;
	const char *trade_no;     /* the gateway's id: the dedup key */
	const char *out_trade_no; /* the merchant's order id */
	const char *status;       /* "paid" or the gateway's raw status */
	const char *amount;       /* as received */
	int64_t amount_fen;
	const char *paid_amount; /* as received; = amount when the family has none */
	int64_t paid_amount_fen;
	const char *method;       /* may be NULL */
	const char *subject;      /* may be NULL */
	const char *passthrough;  /* may be NULL */
	const char *gateway_time; /* may be NULL */
	int64_t received_ms;
	/* Every received parameter. Bit i of unsigned_mask set: raw->v[i] is not
	 * covered by the signature (SPEC §2.5), and goes to the event's
	 * "unsigned" object instead of "raw"; "sign" itself goes to neither. */
	const struct params *raw;
	uint64_t unsigned_mask;
	bool passthrough_unsigned; /* passthrough came from an unsigned field */
	const char *confirmed_by;  /* "query" once the gateway's query API agreed
				     (SPEC §2.5); NULL: not confirmed, left out */
	bool test;                 /* made by payrelayctl send-test (set by the daemon, never
		      from a request): "test": true */
	/* order.refunded only (NULL otherwise): the merchant's refund id, and
	 * what this refund gave back ("refund_amount", as yuan and fen). */
	const char *refund_id;
	int64_t refund_amount_fen;
};

const char *event_type_str(enum event_type t);
const char *event_source_str(enum event_source s);
/* out: "evt_" + lowercase hex md5(channel NUL trade_id NUL status).
 * Returns 0, or -1 (out of memory, or MD5 unavailable) with `out` empty. */
int event_make_id(char out[EVENT_ID_LEN + 1], const char *channel, const char *trade_id,
    const char *status);
/* The id of an order.refunded event: "evt_" + lowercase hex
 * md5(channel NUL trade_id NUL "refunded" NUL refund_id), where trade_id
 * is the gateway's id of the payment refunded. Three NULs, where a payment
 * event's input has two (and no part holds a NUL): never a payment's id.
 * Returns 0, or -1 with `out` empty. */
int event_make_refund_id(char out[EVENT_ID_LEN + 1], const char *channel, const char *trade_id,
    const char *refund_id);
/* The event as compact JSON. It always starts {"id":"…","type":"…", : the
 * record script relies on that head to turn order.paid into
 * order.amount_mismatch (adding "amount_mismatch":true). Strings that are
 * not valid UTF-8 are recorded with U+FFFD in place of bad bytes.
 * The caller frees the result; NULL on allocation failure. */
char *event_to_json(const struct event *ev);

/* Copies `s` (n bytes) into a valid UTF-8 string (bad bytes become U+FFFD,
 * NUL bytes are kept). The caller frees the result; *outlen gets its length. */
char *utf8_sanitize(const char *s, size_t n, size_t *outlen);

#endif
