/* Test callbacks (payrelayctl send-test, docs/operations.md): what a
 * channel's gateway would send for one payment, signed with the channel's
 * own key by the family's sign operation. */
#ifndef PAYRELAY_TESTCB_H
#define PAYRELAY_TESTCB_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "util.h"

struct channel;

/* A test trade id is TESTCB_PREFIX and 32 lowercase hex digits. */
#define TESTCB_PREFIX "paytest_"
#define TESTCB_ID_LEN (sizeof(TESTCB_PREFIX) - 1 + 32)

struct testcb_spec {
	const char *trade_no;     /* the gateway's id: a test trade id */
	const char *out_trade_no; /* the merchant's order id */
	const char *amount;       /* canonical yuan, "0.01" */
	const char *status;       /* the gateway's raw status; NULL: paid */
	time_t now;
};

/* Appends the callback's form body (application/x-www-form-urlencoded,
 * signed) to `form`. Returns 0; -1 with *why set (a static sentence for the
 * operator) when the channel cannot be tested this way or memory ran out. */
int testcb_build(const struct channel *ch, const struct testcb_spec *t, struct sbuf *form,
    const char **why) WUR;

/* True when `s` has the shape of a test trade id. */
bool testcb_is_test_id(const char *s);

#endif
