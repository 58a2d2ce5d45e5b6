/* The family table (family.c) and what every family shares: each row is
 * whole and consistent, family_find and family_names read the table alone,
 * and the shared signing helpers. Each family's own tests are
 * test_family_NAME.c; nothing here names a family. */
#include <check.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "config.h"
#include "crypto.h"
#include "event.h"
#include "family.h"
#include "family_ref.h"
#include "form.h"
#include "util.h"
#include "vectors.h"

/* ---- the table ---------------------------------------------------------- */

START_TEST(test_table_rows)
{
	size_t i, j, n = family_count();

	ck_assert_uint_gt(n, 0);
	ck_assert_ptr_null(family_at(n));
	for (i = 0; i < n; i++) {
		const struct family *f = family_at(i);
		const char *c;

		ck_assert_ptr_nonnull(f);
		ck_assert_msg(f->name != NULL && *f->name != '\0', "family %zu has no name", i);
		/* A name is what config, events and metrics labels carry. */
		for (c = f->name; *c != '\0'; c++)
			ck_assert_msg((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'),
			    "family name \"%s\" is not lower-case alphanumeric", f->name);
		ck_assert_ptr_eq(family_find(f->name), f);
		ck_assert_msg(f->ack_body != NULL && *f->ack_body != '\0', "%s: no ack_body",
		    f->name);
		ck_assert_msg(f->verify != NULL, "%s: no verify", f->name);
		ck_assert_msg(f->trade_id_field != NULL && *f->trade_id_field != '\0',
		    "%s: no trade_id_field", f->name);
		/* Polling is a pair; so is the sweep, which needs a page size. */
		ck_assert_msg((f->poll_query == NULL) == (f->poll_parse == NULL),
		    "%s: poll_query without poll_parse, or the other way", f->name);
		ck_assert_msg((f->sweep_query == NULL) == (f->sweep_parse == NULL) &&
			(f->sweep_query == NULL) == (f->sweep_page == 0),
		    "%s: sweep_query, sweep_parse and sweep_page go together", f->name);
		/* A family confirming by default must be able to ask. */
		if (f->caps & FAMILY_CONFIRM_DEFAULT)
			ck_assert_msg(f->poll_query != NULL,
			    "%s: confirms by query but cannot poll", f->name);
		/* The payer's return (SPEC §10.2): the bit, the verifier and the
		 * field an invalid return's claim is read from go together. */
		ck_assert_msg(((f->caps & FAMILY_RETURN) != 0) == (f->verify_return != NULL) &&
			(f->verify_return == NULL) == (f->return_order_field == NULL),
		    "%s: FAMILY_RETURN, verify_return and return_order_field go together", f->name);
		for (j = 0; j < i; j++)
			ck_assert_msg(strcmp(family_at(j)->name, f->name) != 0,
			    "family %s is in the table twice", f->name);
	}
}
END_TEST

START_TEST(test_family_find)
{
	const char *first = family_at(0)->name;
	char s[64];
	size_t i;

	ck_assert_ptr_null(family_find("nope"));
	ck_assert_ptr_null(family_find(""));
	/* Exact, case-sensitive names. */
	snprintf(s, sizeof(s), "%s", first);
	for (i = 0; s[i] != '\0'; i++)
		s[i] = (char)toupper((unsigned char)s[i]);
	ck_assert_ptr_null(family_find(s));
	snprintf(s, sizeof(s), "%s2", first);
	ck_assert_ptr_null(family_find(s));
}
END_TEST

static bool
has_none(const struct family *f)
{
	(void)f;
	return false;
}

static bool
is_first(const struct family *f)
{
	return f == family_at(0);
}

START_TEST(test_family_names)
{
	char all[512], want[512], one[64];
	size_t i, n = family_count(), len = 0;

	family_names(NULL, all, sizeof(all));
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(want + len, sizeof(want) - len, "%s%s",
		    i == 0           ? ""
			: i + 1 == n ? " or "
				     : ", ",
		    family_at(i)->name);
	ck_assert_str_eq(all, want);
	family_names(is_first, one, sizeof(one));
	ck_assert_str_eq(one, family_at(0)->name);
	family_names(has_none, one, sizeof(one));
	ck_assert_str_eq(one, "");
	/* Cut, never overrun. */
	family_names(NULL, one, 3);
	ck_assert_uint_le(strlen(one), 2);
}
END_TEST

START_TEST(test_verdict_str)
{
	static const enum verdict all[] = { VERDICT_OK, VERDICT_MISSING_FIELD,
		VERDICT_BAD_SIGNATURE, VERDICT_SIGN_TYPE, VERDICT_WRONG_MERCHANT,
		VERDICT_BAD_AMOUNT, VERDICT_STALE };
	size_t i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *s = verdict_str(all[i]);

		ck_assert_msg(s != NULL && *s != '\0', "verdict %zu has no text", i);
	}
}
END_TEST

/* ---- shared helpers ----------------------------------------------------- */

START_TEST(test_sign_string_order_and_skip)
{
	static const char *const none[] = { NULL };
	static const char *const ex[] = { "sign", "x", NULL };
	struct params p;
	struct sbuf b;

	params_init(&p);
	pset(&p, "b", "2");
	pset(&p, "aa", "3");
	pset(&p, "a_b", "4");
	pset(&p, "Z", "5");
	pset(&p, "a", "1");
	pset(&p, "\xe4\xbc\x9a", "6"); /* bytes >= 0x80 sort after ASCII */
	pset(&p, "sign", "s");
	pset(&p, "x", "x");
	pset(&p, "e", "");
	pset(&p, "z0", "0");
	pset(&p, "w", " \t\r\n\v");
	pset(&p, "v", " v ");
	pset(&p, "u", "0.00");

	assert_sign_string(&p, ex, 0,
	    "Z=5&a=1&a_b=4&aa=3&b=2&e=&u=0.00&v= v &w= \t\r\n\v&z0=0&\xe4\xbc\x9a=6");
	assert_sign_string(&p, ex, SKIP_EMPTY,
	    "Z=5&a=1&a_b=4&aa=3&b=2&u=0.00&v= v &w= \t\r\n\v&z0=0&\xe4\xbc\x9a=6");
	assert_sign_string(&p, ex, SKIP_EMPTY | SKIP_ZERO,
	    "Z=5&a=1&a_b=4&aa=3&b=2&u=0.00&v= v &w= \t\r\n\v&\xe4\xbc\x9a=6");
	assert_sign_string(&p, ex, SKIP_EMPTY | SKIP_BLANK,
	    "Z=5&a=1&a_b=4&aa=3&b=2&u=0.00&v= v &z0=0&\xe4\xbc\x9a=6");
	assert_sign_string(&p, none, SKIP_EMPTY | SKIP_BLANK | SKIP_ZERO,
	    "Z=5&a=1&a_b=4&aa=3&b=2&sign=s&u=0.00&v= v &x=x&\xe4\xbc\x9a=6");

	/* it appends */
	sbuf_init(&b);
	ck_assert_int_eq(sbuf_adds(&b, "PRE:"), 0);
	ck_assert_int_eq(family_sign_string(&p, ex, SKIP_EMPTY | SKIP_BLANK | SKIP_ZERO, &b), 0);
	ck_assert_str_eq(b.p, "PRE:Z=5&a=1&a_b=4&aa=3&b=2&u=0.00&v= v &\xe4\xbc\x9a=6");
	sbuf_free(&b);
	params_free(&p);

	/* nothing left: nothing appended */
	params_init(&p);
	pset(&p, "sign", "s");
	pset(&p, "e", "");
	assert_sign_string(&p, ex, SKIP_EMPTY, "");
	params_free(&p);
}
END_TEST

START_TEST(test_hex_equal)
{
	ck_assert(family_hex_equal("3ec3bda0f65fd24c5320e7ab770b2547",
	    "3ec3bda0f65fd24c5320e7ab770b2547"));
	ck_assert(family_hex_equal("3ec3bda0f65fd24c5320e7ab770b2547",
	    "3EC3BDA0F65FD24C5320E7AB770B2547"));
	ck_assert(family_hex_equal("3ec3bda0f65fd24c5320e7ab770b2547",
	    "3eC3bDa0f65fd24c5320e7ab770b2547"));
	ck_assert(!family_hex_equal("3ec3bda0f65fd24c5320e7ab770b2547",
	    "3ec3bda0f65fd24c5320e7ab770b2548"));
	ck_assert(!family_hex_equal("3ec3bda0f65fd24c5320e7ab770b2547",
	    "3ec3bda0f65fd24c5320e7ab770b254"));
	ck_assert(!family_hex_equal("3ec3bda0f65fd24c5320e7ab770b2547",
	    "3ec3bda0f65fd24c5320e7ab770b25470"));
	ck_assert(!family_hex_equal("3ec3bda0f65fd24c5320e7ab770b2547", ""));
	/* case folding is for hex digits only */
	ck_assert(!family_hex_equal("3ec3bda0f65fd24c5320e7ab770b2547",
	    "3ec3bda0f65fd24c5320e7ab770b2"
	    "\x15"
	    "47"));
}
END_TEST

START_TEST(test_family_amount)
{
	int64_t fen = -1;

	ck_assert_int_eq(family_amount("1.00", &fen), 0);
	ck_assert_int_eq(fen, 100);
	ck_assert_int_eq(family_amount("100.0000", &fen), 0);
	ck_assert_int_eq(fen, 10000);
	ck_assert_int_eq(family_amount(NULL, &fen), -1);
	ck_assert_int_eq(family_amount("", &fen), -1);
	ck_assert_int_eq(family_amount("1.001", &fen), -1);
}
END_TEST

START_TEST(test_family_finish)
{
	struct channel ch;
	struct params p;
	struct event ev;
	char id[EVENT_ID_LEN + 1];

	chan_init(&ch, "shop-x", family_at(0)->name, SIGN_MD5, "m-77", "k");
	params_init(&p);
	pset(&p, "transaction_id", "T-9");
	memset(&ev, 0, sizeof(ev));
	ev.trade_no = "T-9";
	ev.status = "11";
	ck_assert_int_eq(family_finish(&ch, &p, &ev), 0);
	ck_assert_str_eq(ev.channel, "shop-x");
	ck_assert_str_eq(ev.merchant_id, "m-77");
	ck_assert_ptr_eq(ev.raw, &p);
	event_make_id(id, "shop-x", "T-9", "11");
	ck_assert_str_eq(ev.id, id);
	params_free(&p);
	chan_free(&ch);
}
END_TEST

static Suite *
family_suite(void)
{
	Suite *s = suite_create("family");
	TCase *tc = tcase_create("table");

	tcase_add_test(tc, test_table_rows);
	tcase_add_test(tc, test_family_find);
	tcase_add_test(tc, test_family_names);
	tcase_add_test(tc, test_verdict_str);
	suite_add_tcase(s, tc);

	tc = tcase_create("helpers");
	tcase_add_test(tc, test_sign_string_order_and_skip);
	tcase_add_test(tc, test_hex_equal);
	tcase_add_test(tc, test_family_amount);
	tcase_add_test(tc, test_family_finish);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(family_suite());
}
