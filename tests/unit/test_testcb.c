/*
 * The families' sign operations (what payrelayctl send-test signs with),
 * checked against every vector of ../shared/vectors: a callback's
 * parameters without its sign must get the vector's sign back. Then the
 * test callbacks testcb_build makes, family by family: each one verifies
 * with the channel's own verify, is a payment (or the status asked for),
 * and carries the test trade id it was given.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "event.h"
#include "family.h"
#include "form.h"
#include "testcb.h"
#include "util.h"
#include "vectors.h"

static void
chan_init(struct channel *ch, const char *family, enum sign_type st, const char *merchant_id,
    const char *key)
{
	memset(ch, 0, sizeof(*ch));
	ch->name = strdup("shop");
	ch->family = family_find(family);
	ch->sign_type = st;
	ch->merchant_id = strdup(merchant_id);
	ch->key = strdup(key);
	ch->key_len = strlen(key);
	ck_assert(
	    ch->family != NULL && ch->name != NULL && ch->merchant_id != NULL && ch->key != NULL);
}

static void
chan_free(struct channel *ch)
{
	free(ch->name);
	free(ch->merchant_id);
	free(ch->key);
	memset(ch, 0, sizeof(*ch));
}

/* The vector's params, but its sign. */
static void
params_from(struct params *p, json_t *obj)
{
	const char *k;
	json_t *v;

	params_init(p);
	json_object_foreach(obj, k, v)
	{
		if (strcmp(k, "sign") == 0)
			continue;
		ck_assert_int_eq(params_set(p, k, json_string_value(v), json_string_length(v)), 0);
	}
}

static void
check_vectors(const char *file, const char *family, const char *id_field, const char *key_field)
{
	json_t *root = vectors_load(file), *v;
	size_t i;

	json_array_foreach(vectors_array(root, "vectors"), i, v)
	{
		const char *desc = vectors_str(v, "description");
		struct channel ch;
		struct params p;
		char sign[33];

		params_from(&p, json_object_get(v, "params"));
		chan_init(&ch, family, SIGN_MD5,
		    id_field[0] == '.' ? vectors_str(v, id_field + 1) : params_value(&p, id_field),
		    vectors_str(v, key_field));
		ck_assert_msg(ch.family->sign(&ch, &p, sign) == 0, "%s: sign failed", desc);
		ck_assert_msg(strcmp(sign, vectors_str(v, "sign")) == 0, "%s (%s): %s, want %s",
		    desc, family, sign, vectors_str(v, "sign"));
		params_free(&p);
		chan_free(&ch);
	}
	json_decref(root);
}

START_TEST(test_sign_epay_vectors)
{
	check_vectors("epay.json", "epay", "pid", "key");
}
END_TEST

START_TEST(test_sign_gatepay_vectors)
{
	check_vectors("gatepay.json", "gatepay", ".appkey", "appsecret");
}
END_TEST

START_TEST(test_sign_payindex_vectors)
{
	check_vectors("payindex.json", "payindex", "memberid", "key");
}
END_TEST

START_TEST(test_sign_epay_rsa_refused)
{
	struct channel ch;
	struct params p;
	struct sbuf form;
	struct testcb_spec t = { "paytest_00000000000000000000000000000000", "o", "0.01", NULL, 0 };
	const char *why = NULL;
	char sign[33];

	chan_init(&ch, "epay", SIGN_RSA, "1001", "unused");
	params_init(&p);
	ck_assert_int_eq(ch.family->sign(&ch, &p, sign), -1);
	sbuf_init(&form);
	ck_assert_int_eq(testcb_build(&ch, &t, &form, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "RSA"));
	sbuf_free(&form);
	params_free(&p);
	chan_free(&ch);
}
END_TEST

/* A test callback of each family verifies, as a payment or with the status
 * asked for. */
static void
check_build(const char *family, const char *mid, const char *key, const char *status,
    enum event_type want_type)
{
	const char *id = "paytest_0123456789abcdef0123456789abcdef";
	struct testcb_spec t = { id, id, "12.34", status, 0 };
	struct channel ch;
	struct params p;
	struct sbuf form;
	struct event ev;
	const char *why = NULL;
	enum verdict v;

	t.now = time(NULL);
	chan_init(&ch, family, SIGN_MD5, mid, key);
	sbuf_init(&form);
	params_init(&p);
	ck_assert_msg(testcb_build(&ch, &t, &form, &why) == 0, "%s: %s", family, why);
	ck_assert_int_eq(form_decode(&p, form.p, form.len), FORM_OK);
	memset(&ev, 0, sizeof(ev));
	v = ch.family->verify(&ch, &p, time(NULL), &ev);
	ck_assert_msg(v == VERDICT_OK, "%s: %s", family, verdict_str(v));
	ck_assert_int_eq(ev.type, want_type);
	ck_assert_str_eq(ev.trade_no, id);
	ck_assert_str_eq(ev.out_trade_no, id);
	ck_assert_int_eq(ev.amount_fen, 1234);
	ck_assert_int_eq(ev.paid_amount_fen, 1234);
	ck_assert(testcb_is_test_id(ev.trade_no));
	/* another key: refused, so the test proves the key */
	free(ch.key);
	ch.key = strdup("another key");
	ch.key_len = strlen(ch.key);
	memset(&ev, 0, sizeof(ev));
	ck_assert_int_eq(ch.family->verify(&ch, &p, time(NULL), &ev), VERDICT_BAD_SIGNATURE);
	params_free(&p);
	sbuf_free(&form);
	chan_free(&ch);
}

START_TEST(test_build_verifies)
{
	check_build("epay", "1001", "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i", NULL, EVENT_PAID);
	check_build("epay", "1001", "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i", "TRADE_CLOSED",
	    EVENT_STATUS);
	check_build("gatepay", "098f6bcd4621d373cade4e832627b4f6",
	    "5ebe2294ecd0e0f08eab7690d2a6ee69", NULL, EVENT_PAID);
	check_build("payindex", "10002", "t4ig5acnpx4fet4zapshjacjd9o4bhbi", NULL, EVENT_PAID);
	check_build("payindex", "10002", "t4ig5acnpx4fet4zapshjacjd9o4bhbi", "11", EVENT_STATUS);
}
END_TEST

START_TEST(test_gatepay_has_no_status)
{
	struct testcb_spec t = { "paytest_0123456789abcdef0123456789abcdef", "o", "1.00", "X", 0 };
	struct channel ch;
	struct sbuf form;
	const char *why = NULL;

	chan_init(&ch, "gatepay", SIGN_MD5, "k", "s");
	sbuf_init(&form);
	ck_assert_int_eq(testcb_build(&ch, &t, &form, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "gatepay"));
	sbuf_free(&form);
	chan_free(&ch);
}
END_TEST

START_TEST(test_is_test_id)
{
	ck_assert(testcb_is_test_id("paytest_0123456789abcdef0123456789abcdef"));
	ck_assert(!testcb_is_test_id("paytest_0123456789abcdef0123456789abcde"));
	ck_assert(!testcb_is_test_id("paytest_0123456789abcdef0123456789abcdef0"));
	ck_assert(!testcb_is_test_id("paytest_0123456789ABCDEF0123456789abcdef"));
	ck_assert(!testcb_is_test_id("2016080622555342651"));
	ck_assert(!testcb_is_test_id(""));
}
END_TEST

static Suite *
testcb_suite(void)
{
	Suite *s = suite_create("testcb");
	TCase *tc = tcase_create("sign");

	tcase_add_test(tc, test_sign_epay_vectors);
	tcase_add_test(tc, test_sign_gatepay_vectors);
	tcase_add_test(tc, test_sign_payindex_vectors);
	tcase_add_test(tc, test_sign_epay_rsa_refused);
	tcase_add_test(tc, test_build_verifies);
	tcase_add_test(tc, test_gatepay_has_no_status);
	tcase_add_test(tc, test_is_test_id);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(testcb_suite());
}
