/* What polling shares whatever the family (src/core/poll_answer.c and
 * family.c's form helper): the JSON helpers, the answer states, and details
 * that are one line with every secret masked. Each family's query and
 * answers are tested in its own test_family_NAME.c. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "family.h"
#include "family_ref.h"
#include "form.h"
#include "util.h"
#include "vectors.h"

#define KEY "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i"

/* A channel with a name and a key: all an answer's detail looks at. */
static void
keyed_chan(struct channel *ch)
{
	memset(ch, 0, sizeof(*ch));
	ch->name = strdup("shop");
	ch->key = strdup(KEY);
	ch->key_len = strlen(KEY);
	ck_assert(ch->name != NULL && ch->key != NULL);
}

/* ---- shared helpers ------------------------------------------------------ */

START_TEST(test_form_add)
{
	struct sbuf s;

	sbuf_init(&s);
	ck_assert_int_eq(family_form_add(&s, "a", "1"), 0);
	ck_assert_str_eq(s.p, "a=1");
	ck_assert_int_eq(family_form_add(&s, "b c", "x y&z=w+v"), 0);
	ck_assert_str_eq(s.p, "a=1&b+c=x+y%26z%3Dw%2Bv");
	sbuf_reset(&s);
	/* PHP urlencode keeps A-Z a-z 0-9 - _ . and encodes ~ and UTF-8. */
	ck_assert_int_eq(family_form_add(&s, "n", "AZaz09-_.~/?#:@!*'()\"\\"), 0);
	ck_assert_str_eq(s.p, "n=AZaz09-_.%7E%2F%3F%23%3A%40%21%2A%27%28%29%22%5C");
	sbuf_reset(&s);
	ck_assert_int_eq(family_form_add(&s, "name", "VIP会员"), 0);
	ck_assert_str_eq(s.p, "name=VIP%E4%BC%9A%E5%91%98");
	sbuf_reset(&s);
	ck_assert_int_eq(family_form_add(&s, "e", ""), 0);
	ck_assert_int_eq(family_form_add(&s, "x", "\x01\x7f\xff"), 0);
	ck_assert_str_eq(s.p, "e=&x=%01%7F%FF");
	sbuf_free(&s);
}
END_TEST

static void
json_text_is(json_t *v, const char *want)
{
	struct sbuf s;

	ck_assert_ptr_nonnull(v);
	sbuf_init(&s);
	ck_assert_int_eq(poll_answer_json_text(v, &s), 0);
	ck_assert_msg(strcmp(s.p != NULL ? s.p : "", want) == 0, "rendered \"%s\", want \"%s\"",
	    s.p != NULL ? s.p : "", want);
	sbuf_free(&s);
	json_decref(v);
}

START_TEST(test_json_text)
{
	struct sbuf s;
	json_t *o;

	json_text_is(json_real(0.1), "0.1");
	json_text_is(json_real(0.5), "0.5");
	json_text_is(json_real(100.1), "100.1");
	json_text_is(json_real(100.0), "100");
	json_text_is(json_real(1.0), "1");
	json_text_is(json_real(0.01), "0.01");
	json_text_is(json_real(9.99), "9.99");
	json_text_is(json_real(1.88), "1.88");
	json_text_is(json_real(10010.5), "10010.5");
	json_text_is(json_real(123456789.12), "123456789.12");
	json_text_is(json_real(0.000123), "0.000123");
	json_text_is(json_real(-2.5), "-2.5");
	json_text_is(json_real(1e300), "1e+300");
	json_text_is(json_integer(0), "0");
	json_text_is(json_integer(1), "1");
	json_text_is(json_integer(-1), "-1");
	json_text_is(json_integer(20160806151343349LL), "20160806151343349");
	json_text_is(json_string("1.00"), "1.00");
	json_text_is(json_string(""), "");
	json_text_is(json_true(), "1");
	json_text_is(json_false(), "");
	json_text_is(json_null(), "");

	sbuf_init(&s);
	o = json_object();
	ck_assert_int_eq(poll_answer_json_text(o, &s), -1);
	json_decref(o);
	o = json_array();
	ck_assert_int_eq(poll_answer_json_text(o, &s), -1);
	json_decref(o);
	sbuf_free(&s);
}
END_TEST

START_TEST(test_json_params)
{
	struct params p;
	json_t *o = json_loads("{\"a\":1,\"b\":\"x\",\"c\":0.5,\"d\":{\"e\":1},\"f\":[1],"
			       "\"g\":null,\"h\":true}",
	    0, NULL);
	json_t *big = json_object();
	char name[16];
	int i;

	ck_assert_ptr_nonnull(o);
	params_init(&p);
	ck_assert_int_eq(poll_answer_json_params(o, &p), 0);
	ck_assert_uint_eq(p.n, 5);
	ck_assert_str_eq(params_value(&p, "a"), "1");
	ck_assert_str_eq(params_value(&p, "b"), "x");
	ck_assert_str_eq(params_value(&p, "c"), "0.5");
	ck_assert_str_eq(params_value(&p, "g"), "");
	ck_assert_str_eq(params_value(&p, "h"), "1");
	ck_assert_ptr_null(params_value(&p, "d"));
	ck_assert_ptr_null(params_value(&p, "f"));
	params_free(&p);
	json_decref(o);

	for (i = 0; i <= FORM_MAX_PARAMS; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		ck_assert_int_eq(json_object_set_new(big, name, json_integer(i)), 0);
	}
	params_init(&p);
	ck_assert_int_eq(poll_answer_json_params(big, &p), -1);
	params_free(&p);
	json_decref(big);
}
END_TEST

START_TEST(test_state_str_and_free)
{
	struct poll_answer a;
	struct poll_query q;

	ck_assert_str_eq(poll_state_str(POLL_PAID), "paid");
	ck_assert_str_eq(poll_state_str(POLL_UNPAID), "unpaid");
	ck_assert_str_eq(poll_state_str(POLL_OTHER), "other");
	ck_assert_str_eq(poll_state_str(POLL_UNKNOWN), "unknown");
	ck_assert_str_eq(poll_state_str(POLL_ERROR), "error");

	poll_answer_init(&a);
	ck_assert_int_eq(a.raw.n, 0);
	ck_assert_ptr_null(a.queried);
	poll_answer_free(&a);
	poll_answer_free(&a); /* again: harmless */
	poll_answer_free(NULL);
	memset(&q, 0, sizeof(q));
	poll_query_free(&q);
	poll_query_free(NULL);
}
END_TEST

START_TEST(test_detail_is_one_masked_line)
{
	struct channel ch;
	struct poll_answer a;
	char long_msg[600];
	size_t i;

	keyed_chan(&ch);
	poll_answer_init(&a);
	poll_answer_set(&a, &ch, POLL_UNKNOWN, "a\nb\r\tc %s!%s", ch.key, ch.key);
	ck_assert_str_eq(a.detail, "a b  c ***!***");
	ck_assert_int_eq(a.state, POLL_UNKNOWN);

	/* Cut to fit, never inside a UTF-8 sequence. */
	for (i = 0; i + 3 < sizeof(long_msg); i += 3)
		memcpy(long_msg + i, "会", 3);
	long_msg[i] = '\0';
	poll_answer_set(&a, &ch, POLL_ERROR, "x%s", long_msg);
	ck_assert_uint_lt(strlen(a.detail), sizeof(a.detail));
	ck_assert_uint_gt(strlen(a.detail), sizeof(a.detail) - 10);
	ck_assert_msg(strcmp(a.detail + strlen(a.detail) - 3, "...") == 0, "no ... after a cut");
	ck_assert_int_eq((strlen(a.detail) - 4) % 3, 0);

	/* A key cut in two by the limit is masked before the cut. */
	memset(long_msg, 'z', sizeof(long_msg));
	memcpy(long_msg + 140, ch.key, ch.key_len);
	long_msg[300] = '\0';
	poll_answer_set(&a, &ch, POLL_ERROR, "%s", long_msg);
	check_detail(&ch, &a);
	ck_assert_ptr_null(strstr(a.detail, "89unJUB8"));
	poll_answer_free(&a);
	chan_free(&ch);
}
END_TEST

/* Every configured secret, not only the polled channel's key, is masked in
 * an answer's detail (logged, stored in Redis, shown by the admin API). The
 * raw fields of a paid answer: test_epay_answer_masks_every_secret. */
START_TEST(test_every_secret_masked)
{
	static const char token[] = "adm-tok-7f3c9e1b5a2d4c6e8f0a1b2c3d4e5f60";
	static const char whsec[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
	struct config_secret secs[] = {
		{ (char *)whsec, sizeof(whsec) - 1 },
		{ (char *)token, sizeof(token) - 1 },
		{ (char *)whsec + 6, sizeof(whsec) - 7 },
		/* too short to alter payment data with */
		{ (char *)"alipay", 6 },
	};
	struct config cfg;
	struct channel ch;
	struct poll_answer a;
	char long_msg[300];

	memset(&cfg, 0, sizeof(cfg));
	cfg.secrets = secs;
	cfg.nsecrets = sizeof(secs) / sizeof(secs[0]);
	keyed_chan(&ch);

	/* without a registered config: the channel's key only */
	poll_answer_init(&a);
	poll_answer_set(&a, NULL, POLL_ERROR, "echo %s", token);
	ck_assert_ptr_nonnull(strstr(a.detail, token));

	config_set_masking(&cfg);
	/* with none of the channel at hand, and with it */
	poll_answer_set(&a, NULL, POLL_ERROR, "echo %s and %s", token, whsec);
	ck_assert_str_eq(a.detail, "echo *** and ***");
	poll_answer_set(&a, &ch, POLL_UNKNOWN, "code -1: %s %s %s", ch.key, whsec + 6, token);
	ck_assert_str_eq(a.detail, "code -1: *** *** ***");
	/* a secret across the cut is masked before it */
	memset(long_msg, 'z', sizeof(long_msg));
	memcpy(long_msg + 145, token, sizeof(token) - 1);
	long_msg[250] = '\0';
	poll_answer_set(&a, NULL, POLL_ERROR, "%s", long_msg);
	ck_assert_ptr_null(strstr(a.detail, "adm-tok"));
	poll_answer_free(&a);

	config_set_masking(NULL);
	chan_free(&ch);
}
END_TEST

static Suite *
poll_suite(void)
{
	Suite *s = suite_create("poll");
	TCase *tc;

	tc = tcase_create("shared");
	tcase_add_test(tc, test_form_add);
	tcase_add_test(tc, test_json_text);
	tcase_add_test(tc, test_json_params);
	tcase_add_test(tc, test_state_str_and_free);
	tcase_add_test(tc, test_detail_is_one_masked_line);
	tcase_add_test(tc, test_every_secret_masked);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(poll_suite());
}
