/* The normalized event of SPEC §4: its deterministic id and its JSON. */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "form.h"
#include "util.h"
#include "vectors.h"

/* 2026-11-22T10:00:00.123Z */
#define RECEIVED_MS 1795341600123LL

START_TEST(test_id_vectors)
{
	json_t *root = vectors_load("event_ids.json"), *v;
	size_t i;

	json_array_foreach(vectors_array(root, "vectors"), i, v)
	{
		char id[EVENT_ID_LEN + 1];

		memset(id, 'x', sizeof(id));
		event_make_id(id, vectors_str(v, "channel"), vectors_str(v, "trade_id"),
		    vectors_str(v, "status"));
		ck_assert_int_eq(id[EVENT_ID_LEN], '\0');
		ck_assert_msg(strcmp(id, vectors_str(v, "id")) == 0, "%s/%s/%s: id %s, want %s",
		    vectors_str(v, "channel"), vectors_str(v, "trade_id"), vectors_str(v, "status"),
		    id, vectors_str(v, "id"));
	}
	json_decref(root);
}
END_TEST

START_TEST(test_id_shape_and_separation)
{
	char a[EVENT_ID_LEN + 1], b[EVENT_ID_LEN + 1];
	size_t i;

	event_make_id(a, "shop-epay", "123", "paid");
	ck_assert_uint_eq(strlen(a), EVENT_ID_LEN);
	ck_assert_int_eq(strncmp(a, "evt_", 4), 0);
	for (i = 4; i < EVENT_ID_LEN; i++)
		ck_assert_msg(isxdigit((unsigned char)a[i]) && !isupper((unsigned char)a[i]),
		    "id %s: not lowercase hex", a);

	/* deterministic */
	event_make_id(b, "shop-epay", "123", "paid");
	ck_assert_str_eq(a, b);
	/* every part counts */
	event_make_id(b, "shop-epay", "123", "TRADE_CLOSED");
	ck_assert_str_ne(a, b);
	event_make_id(b, "shop-epay", "124", "paid");
	ck_assert_str_ne(a, b);
	event_make_id(b, "shop-epay2", "123", "paid");
	ck_assert_str_ne(a, b);
	/* the NUL separators keep ("ab","c") apart from ("a","bc") */
	event_make_id(a, "shop", "ab", "c");
	event_make_id(b, "shop", "a", "bc");
	ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_type_and_source_strings)
{
	ck_assert_str_eq(event_type_str(EVENT_PAID), "order.paid");
	ck_assert_str_eq(event_type_str(EVENT_STATUS), "order.status");
	ck_assert_str_eq(event_type_str(EVENT_AMOUNT_MISMATCH), "order.amount_mismatch");
	ck_assert_str_eq(event_source_str(SOURCE_CALLBACK), "callback");
	ck_assert_str_eq(event_source_str(SOURCE_POLL), "poll");
	ck_assert_str_eq(event_source_str(SOURCE_REPLAY), "replay");
	ck_assert_str_eq(event_type_str(EVENT_REFUNDED), "order.refunded");
	ck_assert_str_eq(event_source_str(SOURCE_ADMIN), "admin");
}
END_TEST

START_TEST(test_iso8601)
{
	char out[25];

	memset(out, 'x', sizeof(out));
	format_iso8601_ms(out, RECEIVED_MS);
	ck_assert_str_eq(out, "2026-11-22T10:00:00.123Z");
	format_iso8601_ms(out, 0);
	ck_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
	format_iso8601_ms(out, 1795341599999LL);
	ck_assert_str_eq(out, "2026-11-22T09:59:59.999Z");
	format_iso8601_ms(out, 1709164800007LL); /* leap day */
	ck_assert_str_eq(out, "2024-02-29T00:00:00.007Z");
	/* The same second again (its text is cached), then the next one. */
	format_iso8601_ms(out, 1709164800070LL);
	ck_assert_str_eq(out, "2024-02-29T00:00:00.070Z");
	format_iso8601_ms(out, 1709164800999LL);
	ck_assert_str_eq(out, "2024-02-29T00:00:00.999Z");
	format_iso8601_ms(out, 1709164801000LL);
	ck_assert_str_eq(out, "2024-02-29T00:00:01.000Z");
	format_iso8601_ms(out, 1709164800500LL); /* back: not the cached second */
	ck_assert_str_eq(out, "2024-02-29T00:00:00.500Z");
}
END_TEST

/* ---- event_to_json ------------------------------------------------------ */

struct fixture {
	struct params raw;
	struct event ev;
};

static void
pset(struct params *p, const char *name, const char *value)
{
	ck_assert_int_eq(params_set(p, name, value, strlen(value)), 0);
}

/* A fully filled epay event. */
static void
fixture_init(struct fixture *f)
{
	struct event *ev = &f->ev;

	params_init(&f->raw);
	pset(&f->raw, "pid", "1001");
	pset(&f->raw, "trade_no", "2016080622555342651");
	pset(&f->raw, "out_trade_no", "20160806151343349");
	pset(&f->raw, "type", "alipay");
	pset(&f->raw, "name", "VIP会员");
	pset(&f->raw, "money", "1.00");
	pset(&f->raw, "trade_status", "TRADE_SUCCESS");
	pset(&f->raw, "param", "uid=42");
	pset(&f->raw, "sign", "3ec3bda0f65fd24c5320e7ab770b2547");
	pset(&f->raw, "sign_type", "MD5");

	memset(ev, 0, sizeof(*ev));
	event_make_id(ev->id, "shop-epay", "2016080622555342651", "paid");
	ev->type = EVENT_PAID;
	ev->source = SOURCE_CALLBACK;
	ev->channel = "shop-epay";
	ev->family = "epay";
	ev->merchant_id = "1001";
	ev->trade_no = "2016080622555342651";
	ev->out_trade_no = "20160806151343349";
	ev->status = "paid";
	ev->amount = "1.00";
	ev->amount_fen = 100;
	ev->paid_amount = "0.99";
	ev->paid_amount_fen = 99;
	ev->method = "alipay";
	ev->subject = "VIP会员";
	ev->passthrough = "uid=42";
	ev->gateway_time = "2016-08-06 22:55:52";
	ev->received_ms = RECEIVED_MS;
	ev->raw = &f->raw;
}

static void
fixture_free(struct fixture *f)
{
	params_free(&f->raw);
}

/* event_to_json parsed back; the caller json_decref()s it. */
static json_t *
to_json(const struct event *ev)
{
	char *s = event_to_json(ev);
	json_error_t err;
	json_t *j;

	ck_assert_msg(s != NULL, "event_to_json returned NULL");
	ck_assert_msg(strchr(s, '\n') == NULL, "event JSON is not compact (one line)");
	j = json_loads(s, JSON_REJECT_DUPLICATES, &err);
	ck_assert_msg(j != NULL, "event JSON does not parse: %s\n%s", err.text, s);
	ck_assert_msg(json_is_object(j), "event JSON is not an object");
	free(s);
	return j;
}

static void
assert_jstr(const json_t *o, const char *key, const char *want)
{
	json_t *v = json_object_get(o, key);

	ck_assert_msg(json_is_string(v), "\"%s\" missing or not a string", key);
	ck_assert_msg(strcmp(json_string_value(v), want) == 0, "\"%s\": \"%s\", want \"%s\"", key,
	    json_string_value(v), want);
}

static void
assert_jint(const json_t *o, const char *key, json_int_t want)
{
	json_t *v = json_object_get(o, key);

	ck_assert_msg(json_is_integer(v), "\"%s\" missing or not an integer", key);
	ck_assert_msg(json_integer_value(v) == want,
	    "\"%s\": %" JSON_INTEGER_FORMAT ", want %" JSON_INTEGER_FORMAT, key,
	    json_integer_value(v), want);
}

START_TEST(test_json_every_field)
{
	struct fixture f;
	json_t *j, *raw;
	size_t i;

	fixture_init(&f);
	j = to_json(&f.ev);
	assert_jstr(j, "id", f.ev.id);
	ck_assert_int_eq(strncmp(f.ev.id, "evt_", 4), 0);
	assert_jstr(j, "type", "order.paid");
	assert_jstr(j, "channel", "shop-epay");
	assert_jstr(j, "family", "epay");
	assert_jstr(j, "merchant_id", "1001");
	assert_jstr(j, "trade_no", "2016080622555342651");
	assert_jstr(j, "out_trade_no", "20160806151343349");
	assert_jstr(j, "status", "paid");
	assert_jstr(j, "amount", "1.00");
	assert_jint(j, "amount_fen", 100);
	assert_jstr(j, "paid_amount", "0.99");
	assert_jint(j, "paid_amount_fen", 99);
	assert_jstr(j, "currency", "CNY");
	assert_jstr(j, "method", "alipay");
	assert_jstr(j, "subject", "VIP\xe4\xbc\x9a\xe5\x91\x98");
	assert_jstr(j, "passthrough", "uid=42");
	assert_jstr(j, "gateway_time", "2016-08-06 22:55:52");
	assert_jstr(j, "received_at", "2026-11-22T10:00:00.123Z");
	assert_jstr(j, "source", "callback");
	ck_assert_ptr_null(json_object_get(j, "amount_mismatch"));

	raw = json_object_get(j, "raw");
	ck_assert_msg(json_is_object(raw), "\"raw\" missing or not an object");
	ck_assert_ptr_null(json_object_get(raw, "sign"));
	ck_assert_uint_eq(json_object_size(raw), f.raw.n - 1);
	for (i = 0; i < f.raw.n; i++) {
		if (strcmp(f.raw.v[i].name, "sign") == 0)
			continue;
		assert_jstr(raw, f.raw.v[i].name, f.raw.v[i].value);
	}
	assert_jstr(raw, "sign_type", "MD5");
	assert_jstr(raw, "name", "VIP会员");

	json_decref(j);
	fixture_free(&f);
}
END_TEST

START_TEST(test_json_optional_fields_absent)
{
	struct fixture f;
	json_t *j;

	fixture_init(&f);
	f.ev.method = NULL;
	f.ev.subject = NULL;
	f.ev.passthrough = NULL;
	f.ev.gateway_time = NULL;
	j = to_json(&f.ev);
	ck_assert_ptr_null(json_object_get(j, "method"));
	ck_assert_ptr_null(json_object_get(j, "subject"));
	ck_assert_ptr_null(json_object_get(j, "passthrough"));
	ck_assert_ptr_null(json_object_get(j, "gateway_time"));
	ck_assert_ptr_null(json_object_get(j, "confirmed_by"));
	/* the rest is still there */
	assert_jstr(j, "trade_no", "2016080622555342651");
	assert_jint(j, "amount_fen", 100);
	assert_jstr(j, "currency", "CNY");
	json_decref(j);
	fixture_free(&f);
}
END_TEST

START_TEST(test_json_starts_with_id_and_type)
{
	struct fixture f;
	char head[128];
	char *s;

	/* The record script turns a paid event into order.amount_mismatch by
	 * rewriting this exact head (src/store/lua/record.lua): it must never move. */
	fixture_init(&f);
	s = event_to_json(&f.ev);
	ck_assert_ptr_nonnull(s);
	snprintf(head, sizeof(head), "{\"id\":\"%s\",\"type\":\"order.paid\",", f.ev.id);
	ck_assert_msg(strncmp(s, head, strlen(head)) == 0, "JSON head is not %s: %s", head, s);
	free(s);
	fixture_free(&f);
}
END_TEST

/* SPEC §2.5: "confirmed_by" only once the gateway's query agreed, and the
 * head the record script rewrites stays first. */
START_TEST(test_json_confirmed_by)
{
	struct fixture f;
	char head[128];
	char *s;
	json_t *j;

	fixture_init(&f);
	f.ev.confirmed_by = "query";
	j = to_json(&f.ev);
	assert_jstr(j, "confirmed_by", "query");
	json_decref(j);
	s = event_to_json(&f.ev);
	ck_assert_ptr_nonnull(s);
	snprintf(head, sizeof(head), "{\"id\":\"%s\",\"type\":\"order.paid\",", f.ev.id);
	ck_assert_msg(strncmp(s, head, strlen(head)) == 0, "JSON head is not %s: %s", head, s);
	free(s);
	fixture_free(&f);
}
END_TEST

/* order.refunded (SPEC §10.3): the refund's fields, and none on other events. */
START_TEST(test_json_refund_fields)
{
	struct fixture f;
	json_t *j;

	fixture_init(&f);
	j = to_json(&f.ev);
	ck_assert_ptr_null(json_object_get(j, "refund_id"));
	ck_assert_ptr_null(json_object_get(j, "refund_amount"));
	json_decref(j);
	f.ev.type = EVENT_REFUNDED;
	f.ev.source = SOURCE_ADMIN;
	f.ev.status = "refunded";
	f.ev.refund_id = "RF-1";
	f.ev.refund_amount_fen = 150;
	j = to_json(&f.ev);
	assert_jstr(j, "type", "order.refunded");
	assert_jstr(j, "source", "admin");
	assert_jstr(j, "refund_id", "RF-1");
	assert_jstr(j, "refund_amount", "1.50");
	assert_jint(j, "refund_amount_fen", 150);
	json_decref(j);
	fixture_free(&f);
}
END_TEST

START_TEST(test_json_status_and_source)
{
	struct fixture f;
	json_t *j;

	fixture_init(&f);
	f.ev.type = EVENT_STATUS;
	f.ev.status = "TRADE_CLOSED";
	f.ev.source = SOURCE_POLL;
	j = to_json(&f.ev);
	assert_jstr(j, "type", "order.status");
	assert_jstr(j, "status", "TRADE_CLOSED");
	assert_jstr(j, "source", "poll");
	ck_assert_ptr_null(json_object_get(j, "amount_mismatch"));
	json_decref(j);

	f.ev.source = SOURCE_REPLAY;
	j = to_json(&f.ev);
	assert_jstr(j, "source", "replay");
	json_decref(j);
	fixture_free(&f);
}
END_TEST

START_TEST(test_json_large_amounts_are_integers)
{
	struct fixture f;
	json_t *j;

	fixture_init(&f);
	f.ev.amount = "10000000000000.00";
	f.ev.amount_fen = 1000000000000000LL;
	f.ev.paid_amount = "0";
	f.ev.paid_amount_fen = 0;
	j = to_json(&f.ev);
	assert_jint(j, "amount_fen", 1000000000000000LL);
	assert_jint(j, "paid_amount_fen", 0);
	assert_jstr(j, "paid_amount", "0");
	json_decref(j);
	fixture_free(&f);
}
END_TEST

START_TEST(test_json_invalid_utf8)
{
	struct fixture f;
	json_t *j, *raw;

	fixture_init(&f);
	f.ev.subject = "VIP\xff会员";
	f.ev.passthrough = "a\xc0\xafz";
	pset(&f.raw, "name", "bad\x80value");
	pset(&f.raw, "na\xffme", "x");
	j = to_json(&f.ev);
	assert_jstr(j, "subject", "VIP\xef\xbf\xbd会员");
	assert_jstr(j, "passthrough", "a\xef\xbf\xbd\xef\xbf\xbdz");
	raw = json_object_get(j, "raw");
	ck_assert_ptr_nonnull(raw);
	assert_jstr(raw, "name", "bad\xef\xbf\xbdvalue");
	assert_jstr(raw, "na\xef\xbf\xbdme", "x");
	json_decref(j);
	fixture_free(&f);
}
END_TEST

START_TEST(test_json_escapes)
{
	struct fixture f;
	json_t *j, *raw;

	fixture_init(&f);
	f.ev.passthrough = "quote\" backslash\\ newline\n tab\t <script>";
	pset(&f.raw, "param", "quote\" backslash\\ newline\n tab\t <script>");
	j = to_json(&f.ev);
	assert_jstr(j, "passthrough", "quote\" backslash\\ newline\n tab\t <script>");
	raw = json_object_get(j, "raw");
	assert_jstr(raw, "param", "quote\" backslash\\ newline\n tab\t <script>");
	json_decref(j);
	fixture_free(&f);
}
END_TEST

START_TEST(test_json_no_raw)
{
	struct fixture f;
	json_t *j, *raw;
	struct params empty;

	fixture_init(&f);
	params_init(&empty);
	f.ev.raw = &empty;
	j = to_json(&f.ev);
	raw = json_object_get(j, "raw");
	ck_assert_msg(json_is_object(raw), "\"raw\" missing for an empty parameter set");
	ck_assert_uint_eq(json_object_size(raw), 0);
	json_decref(j);
	params_free(&empty);
	fixture_free(&f);
}
END_TEST

/* ---- utf8_sanitize ------------------------------------------------------ */

static void
assert_same(const char *s, size_t n)
{
	size_t outlen = 12345;
	char *out = utf8_sanitize(s, n, &outlen);

	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(outlen, n);
	if (n > 0)
		ck_assert_mem_eq(out, s, n);
	ck_assert_int_eq(out[n], '\0');
	free(out);
}

START_TEST(test_sanitize_valid_unchanged)
{
	assert_same("", 0);
	assert_same("plain ascii", 11);
	assert_same("VIP会员", strlen("VIP会员"));
	assert_same("\xc2\x80\xdf\xbf", 4);                 /* U+0080, U+07FF */
	assert_same("\xe0\xa0\x80\xef\xbf\xbf", 6);         /* U+0800, U+FFFF */
	assert_same("\xf0\x9f\x98\x80", 4);                 /* U+1F600 */
	assert_same("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8); /* U+10000, U+10FFFF */
	assert_same("\xee\x80\x80", 3);                     /* U+E000, past the surrogates */
	assert_same("a\0b", 3);                             /* NUL is kept */
}
END_TEST

/* True when s[0..n) is n/3 copies of U+FFFD, n > 0. */
static int
all_replacement(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n % 3 != 0)
		return 0;
	for (i = 0; i < n; i += 3)
		if (memcmp(s + i, "\xef\xbf\xbd", 3) != 0)
			return 0;
	return 1;
}

/* `pre` BAD `post` comes out as `pre` U+FFFD... `post`, with between one
 * and badlen replacement characters. */
static void
assert_replaced(const char *pre, const char *bad, size_t badlen, const char *post)
{
	size_t pl = strlen(pre), ql = strlen(post), n = pl + badlen + ql, outlen = 0, mid;
	char *in = malloc(n + 1), *out;

	ck_assert_ptr_nonnull(in);
	memcpy(in, pre, pl);
	memcpy(in + pl, bad, badlen);
	memcpy(in + pl + badlen, post, ql);
	out = utf8_sanitize(in, n, &outlen);
	ck_assert_ptr_nonnull(out);
	ck_assert_msg(outlen >= pl + ql + 3, "bad bytes dropped instead of replaced");
	mid = outlen - pl - ql;
	ck_assert_mem_eq(out, pre, pl);
	ck_assert_mem_eq(out + outlen - ql, post, ql);
	ck_assert_msg(all_replacement(out + pl, mid) && mid / 3 <= badlen,
	    "\"%s\" + %zu bad bytes (first 0x%02x) + \"%s\": not replaced by 1..%zu U+FFFD", pre,
	    badlen, (unsigned char)bad[0], post, badlen);
	/* the result is valid: sanitizing it again changes nothing */
	assert_same(out, outlen);
	free(out);
	free(in);
}

START_TEST(test_sanitize_invalid_replaced)
{
	assert_replaced("a", "\xff", 1, "b");
	assert_replaced("a", "\xfe", 1, "b");
	assert_replaced("a", "\x80", 1, "b"); /* lone continuation byte */
	assert_replaced("a", "\xbf\xbf", 2, "b");
	assert_replaced("a", "\xc0\xaf", 2, "b");         /* overlong '/' */
	assert_replaced("a", "\xc1\xbf", 2, "b");         /* overlong */
	assert_replaced("a", "\xe0\x80\xaf", 3, "b");     /* overlong 3-byte */
	assert_replaced("a", "\xf0\x80\x80\xaf", 4, "b"); /* overlong 4-byte */
	assert_replaced("a", "\xed\xa0\x80", 3, "b");     /* surrogate U+D800 */
	assert_replaced("a", "\xed\xbf\xbf", 3, "b");     /* surrogate U+DFFF */
	assert_replaced("a", "\xf4\x90\x80\x80", 4, "b"); /* above U+10FFFF */
	assert_replaced("a", "\xf5\x80\x80\x80", 4, "b");
	assert_replaced("a", "\xe4\xbc", 2, "b");       /* truncated 3-byte */
	assert_replaced("a", "\xf0\x9f\x98", 3, "b");   /* truncated 4-byte */
	assert_replaced("VIP", "\xe4\xbc", 2, "");      /* truncated at the end */
	assert_replaced("", "\xe5", 1, "\xe4\xbc\x9a"); /* lead byte before a valid char */
	assert_replaced("\xe4\xbc\x9a", "\xc3", 1, "x");
}
END_TEST

START_TEST(test_sanitize_uses_len)
{
	size_t outlen = 0;
	char *out = utf8_sanitize("abc\xff", 3, &outlen);

	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(outlen, 3);
	ck_assert_str_eq(out, "abc");
	free(out);
}
END_TEST

static Suite *
event_suite(void)
{
	Suite *s = suite_create("event");
	TCase *tc = tcase_create("id");

	tcase_add_test(tc, test_id_vectors);
	tcase_add_test(tc, test_id_shape_and_separation);
	tcase_add_test(tc, test_type_and_source_strings);
	tcase_add_test(tc, test_iso8601);
	suite_add_tcase(s, tc);

	tc = tcase_create("json");
	tcase_add_test(tc, test_json_every_field);
	tcase_add_test(tc, test_json_optional_fields_absent);
	tcase_add_test(tc, test_json_starts_with_id_and_type);
	tcase_add_test(tc, test_json_confirmed_by);
	tcase_add_test(tc, test_json_status_and_source);
	tcase_add_test(tc, test_json_refund_fields);
	tcase_add_test(tc, test_json_large_amounts_are_integers);
	tcase_add_test(tc, test_json_invalid_utf8);
	tcase_add_test(tc, test_json_escapes);
	tcase_add_test(tc, test_json_no_raw);
	suite_add_tcase(s, tc);

	tc = tcase_create("utf8");
	tcase_add_test(tc, test_sanitize_valid_unchanged);
	tcase_add_test(tc, test_sanitize_invalid_replaced);
	tcase_add_test(tc, test_sanitize_uses_len);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(event_suite());
}
