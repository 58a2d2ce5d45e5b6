/* Gateway families. Each family is one file (family_NAME.c) exporting one
 * `struct family`; a fourth family is one new file and one line in
 * family.c's table. */
#ifndef PAYRELAY_FAMILY_H
#define PAYRELAY_FAMILY_H

#include <stdbool.h>
#include <time.h>

#include "event.h"
#include "form.h"
#include "util.h"

struct channel;

/* Why a callback was refused. Every refusal is answered `fail`. */
enum verdict {
	VERDICT_OK = 0,
	VERDICT_MISSING_FIELD, /* a required parameter is absent or empty */
	VERDICT_BAD_SIGNATURE,
	VERDICT_SIGN_TYPE,      /* the request's sign_type differs from the channel's */
	VERDICT_WRONG_MERCHANT, /* pid / appkey / memberid is not the channel's */
	VERDICT_BAD_AMOUNT,     /* an amount that is not an exact decimal of fen */
	VERDICT_STALE,          /* a signed timestamp outside the allowed window */
};

const char *verdict_str(enum verdict v);

struct family {
	const char *name;
	const char *ack_body; /* what the gateway must read to stop retrying */
	/* Checks a callback against the channel and fills `ev` (borrowing from
	 * `p` and `ch`; id, type, status, amounts and the family-specific
	 * fields; received_ms and source are the caller's). `now` is wall-clock
	 * seconds, for signed timestamps. */
	enum verdict (*verify)(const struct channel *ch, const struct params *p, time_t now,
	    struct event *ev);
};

extern const struct family family_epay;
extern const struct family family_gatepay;
extern const struct family family_payindex;

/* The family called `name`, or NULL. */
const struct family *family_find(const char *name);

/* Shared signing helpers. */

/* Which parameters a sorted "k=v&k=v" signing string leaves out. */
enum skip_rule {
	SKIP_EMPTY = 1 << 0, /* value "" */
	SKIP_BLANK = 1 << 1, /* value only PHP trim() white space */
	SKIP_ZERO = 1 << 2,  /* value "0" (PHP empty()) */
};

/* Appends the parameters of `p`, but for those named in `exclude`
 * (NULL-terminated) and those `skip` rules out, sorted by name in byte
 * order, as k1=v1&k2=v2 to `out`. Returns 0 or -1. */
int family_sign_string(const struct params *p, const char *const *exclude, unsigned skip,
    struct sbuf *out) WUR;
/* True when `got` (hex, any case) equals the hex digest `want`
 * (constant time). */
bool family_hex_equal(const char *want, const char *got);
/* Fills the fields every family shares (channel, merchant_id, raw = p) and the id
 * from channel, trade_no and status. Each verify calls it on success. */
void family_finish(const struct channel *ch, const struct params *p, struct event *ev);
/* Parses `s` into fen; NULL or invalid gives -1. */
int family_amount(const char *s, int64_t *fen) WUR;

#endif
