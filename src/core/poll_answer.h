/* Poll answers: what a family's poll_parse fills, and the helpers every
 * family's parser shares (the detail line, masking, the JSON the gateways
 * answer in). Pure: no I/O, so the check unit tests and fuzzers reach it. */
#ifndef PAYRELAY_POLL_ANSWER_H
#define PAYRELAY_POLL_ANSWER_H

#include <stdbool.h>
#include <stddef.h>

#include "event.h"
#include "form.h"
#include "util.h"

struct channel;

/* A query to the gateway about one order (SPEC §2.x "Polling"). */
struct poll_query {
	const char *method; /* "GET" or "POST" (static) */
	char *url;          /* api_base + path (+ query string for GET) */
	char *body;         /* form body for POST, else NULL */
	size_t body_len;
};

void poll_query_free(struct poll_query *q);

/* What a poll answer says about the order. */
enum poll_state {
	POLL_PAID,    /* paid: the answer fills an event */
	POLL_UNPAID,  /* known, not paid (yet) */
	POLL_OTHER,   /* known, in another state (refunded, frozen, closed): not polled again */
	POLL_UNKNOWN, /* the gateway does not know it (yet): polled again */
	POLL_ERROR,   /* error answer, garbage, bad signature: polled again */
};

const char *poll_state_str(enum poll_state s);

/* A parsed poll answer. On POLL_PAID, `raw` holds the answer's fields as
 * strings (what "raw" of the event shows), and `ev` is filled the way a
 * callback's verify fills it, borrowing from `raw` and the channel: a paid
 * poll and its callback get the same event id. */
struct poll_answer {
	enum poll_state state;
	char detail[160]; /* why, for the log: never a secret */
	struct params raw;
	struct event ev;
	char *queried; /* owned: the queried out_trade_no, when ev borrows it */
};

void poll_answer_init(struct poll_answer *a);
void poll_answer_free(struct poll_answer *a);

struct json_t;

/* Sets a->state, and a->detail from a printf format: made one line, cut to
 * fit, with the channel's key and every secret of config_masking() masked
 * wherever they appear (gateways echo what they were sent). `ch` may be
 * NULL. */
void poll_answer_set(struct poll_answer *a, const struct channel *ch, enum poll_state s,
    const char *fmt, ...) PRINTF_LIKE(4, 5);
/* Masks every secret of config_masking() at least POLL_MASK_MIN bytes
 * long in the names and values of a->raw, in place (a->ev borrows from
 * them): before a paid answer is recorded, as the event's raw fields are
 * stored and delivered. */
void poll_answer_mask(struct poll_answer *a);
#define POLL_MASK_MIN 8
/* Copies `s` (NULL: "") into out[n] as one line, cut to fit without
 * splitting a UTF-8 sequence, with the channel's key (ch may be NULL) and
 * every secret of config_masking() masked: for what a gateway said. */
void poll_answer_masked_copy(const struct channel *ch, const char *s, char *out, size_t n);
/* Parses an answer body that must be a JSON object. The caller
 * json_decref()s the result; NULL sets a->state POLL_ERROR and says why. */
struct json_t *poll_answer_json(struct poll_answer *a, const char *body, size_t len);
/* Appends the JSON scalar `v` as the PHP behind the gateway printed it:
 * strings verbatim, integers as %lld, reals in the fewest digits that read
 * back as the same double (0.1 is "0.1", 100.0 is "100"), true "1",
 * false and null "". Only to recover the gateway's text: never compute
 * money with it. Returns 0, or -1 for an array or object (or no memory). */
int poll_answer_json_text(const struct json_t *v, struct sbuf *out) WUR;
/* Sets the scalar members of the JSON object `obj` in `raw` as strings
 * (poll_answer_json_text); arrays and objects are left out. Returns 0, or -1
 * (more than FORM_MAX_PARAMS fields, or no memory). */
int poll_answer_json_params(const struct json_t *obj, struct params *raw) WUR;
/* Checks that an answer is about `queried`: `got` is the answer's own
 * out_trade_no (NULL or "" when it has none). Sets POLL_ERROR and returns
 * -1 when it names another order. */
int poll_answer_order(struct poll_answer *a, const char *got, const char *queried) WUR;
/* What a paid answer's event borrows as out_trade_no: `got` when the
 * answer has one, else a copy of `queried` kept in a->queried. NULL when
 * out of memory. */
const char *poll_answer_out_trade_no(struct poll_answer *a, const char *got, const char *queried);

#endif
