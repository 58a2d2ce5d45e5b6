/* Money is parsed exactly into integer fen (SPEC §2.4, vectors/amounts.json). */
#include <check.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"
#include "vectors.h"

static int
parse(const char *s, int64_t *fen)
{
	return amount_parse(s, strlen(s), fen);
}

START_TEST(test_vectors_valid)
{
	json_t *root = vectors_load("amounts.json");
	json_t *valid = json_object_get(root, "valid"), *want;
	const char *s;
	size_t n = 0;

	ck_assert_msg(json_is_object(valid) && json_object_size(valid) > 0,
	    "amounts.json has no \"valid\" object");
	json_object_foreach(valid, s, want)
	{
		int64_t fen = -12345;
		int rc = parse(s, &fen);

		ck_assert_msg(json_is_integer(want), "amounts.json: \"%s\" not an integer", s);
		ck_assert_msg(rc == 0, "amount_parse(\"%s\") = %d, want 0", s, rc);
		ck_assert_msg(fen == (int64_t)json_integer_value(want),
		    "amount_parse(\"%s\") = %" PRId64 " fen, want %" JSON_INTEGER_FORMAT, s, fen,
		    json_integer_value(want));
		n++;
	}
	ck_assert_uint_eq(n, json_object_size(valid));
	json_decref(root);
}
END_TEST

START_TEST(test_vectors_invalid)
{
	json_t *root = vectors_load("amounts.json");
	json_t *invalid = vectors_array(root, "invalid"), *v;
	size_t i;

	json_array_foreach(invalid, i, v)
	{
		const char *s = json_string_value(v);
		int64_t fen = 0;
		int rc;

		ck_assert_msg(s != NULL, "amounts.json: invalid[%zu] is not a string", i);
		rc = amount_parse(s, json_string_length(v), &fen);
		ck_assert_msg(rc == -1, "amount_parse(\"%s\") = %d (%" PRId64 " fen), want -1", s,
		    rc, fen);
	}
	json_decref(root);
}
END_TEST

START_TEST(test_more_invalid)
{
	static const char *const bad[] = {
		"1..0",
		"1.0.",
		"..",
		".",
		"1. 0",
		"\t1",
		"1\n",
		"0x1",
		"1_000",
		"１",
		"1.00-",
		"--1",
		"-0",
		"+0",
		"inf",
		"Infinity",
		"1.0e0",
		"1.01e2",
		"2.50.",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t fen = 0;
		int rc = parse(bad[i], &fen);

		ck_assert_msg(rc == -1, "amount_parse(\"%s\") = %d (%" PRId64 " fen), want -1",
		    bad[i], rc, fen);
	}
}
END_TEST

START_TEST(test_trailing_zero_decimals)
{
	int64_t fen = -1;

	ck_assert_int_eq(parse("1.000000000000000000000000000000", &fen), 0);
	ck_assert_int_eq(fen, 100);
	ck_assert_int_eq(parse("12.340", &fen), 0);
	ck_assert_int_eq(fen, 1234);
	ck_assert_int_eq(parse("0.0000", &fen), 0);
	ck_assert_int_eq(fen, 0);
	ck_assert_int_eq(parse("0.00000000000000000000000001", &fen), -1);
	ck_assert_int_eq(parse("12.345", &fen), -1);
	ck_assert_int_eq(parse("12.3400001", &fen), -1);
}
END_TEST

START_TEST(test_uses_len_not_nul)
{
	int64_t fen = -1;

	/* only the first `len` bytes count */
	ck_assert_int_eq(amount_parse("1.00xyz", 4, &fen), 0);
	ck_assert_int_eq(fen, 100);
	ck_assert_int_eq(amount_parse("12.345", 5, &fen), 0);
	ck_assert_int_eq(fen, 1234);
	ck_assert_int_eq(amount_parse("123", 0, &fen), -1);
	/* a NUL inside the length is not a digit */
	ck_assert_int_eq(amount_parse("1\0", 2, &fen), -1);
	ck_assert_int_eq(amount_parse("1.0\0", 4, &fen), -1);
}
END_TEST

START_TEST(test_max_boundary)
{
	int64_t fen = -1;

	ck_assert_int_eq(AMOUNT_MAX_FEN, 1000000000000000LL);
	ck_assert_int_eq(parse("10000000000000", &fen), 0);
	ck_assert_int_eq(fen, AMOUNT_MAX_FEN);
	ck_assert_int_eq(parse("10000000000000.00", &fen), 0);
	ck_assert_int_eq(fen, AMOUNT_MAX_FEN);
	ck_assert_int_eq(parse("9999999999999.99", &fen), 0);
	ck_assert_int_eq(fen, AMOUNT_MAX_FEN - 1);

	ck_assert_int_eq(parse("10000000000000.01", &fen), -1);
	ck_assert_int_eq(parse("10000000000000.1", &fen), -1);
	ck_assert_int_eq(parse("10000000000001", &fen), -1);
	/* values that overflow int64 in fen, or in yuan */
	ck_assert_int_eq(parse("92233720368547758.07", &fen), -1);
	ck_assert_int_eq(parse("92233720368547758.08", &fen), -1);
	ck_assert_int_eq(parse("9223372036854775807", &fen), -1);
	ck_assert_int_eq(parse("18446744073709551617", &fen), -1);
	ck_assert_int_eq(parse("184467440737095516.17", &fen), -1);
	ck_assert_int_eq(parse("99999999999999999999999999999999999999", &fen), -1);
}
END_TEST

static void
assert_format(int64_t fen, const char *want)
{
	char out[32];

	memset(out, 'x', sizeof(out));
	amount_format(fen, out, sizeof(out));
	ck_assert_msg(memchr(out, '\0', sizeof(out)) != NULL,
	    "amount_format(%" PRId64 ") not NUL-terminated", fen);
	ck_assert_msg(strcmp(out, want) == 0, "amount_format(%" PRId64 ") = \"%s\", want \"%s\"",
	    fen, out, want);
}

START_TEST(test_format)
{
	assert_format(0, "0.00");
	assert_format(1, "0.01");
	assert_format(10, "0.10");
	assert_format(99, "0.99");
	assert_format(100, "1.00");
	assert_format(101, "1.01");
	assert_format(8800, "88.00");
	assert_format(123456789, "1234567.89");
	assert_format(AMOUNT_MAX_FEN, "10000000000000.00");
}
END_TEST

START_TEST(test_format_fits_24_bytes)
{
	char out[24];

	amount_format(AMOUNT_MAX_FEN, out, sizeof(out));
	ck_assert_str_eq(out, "10000000000000.00");
}
END_TEST

START_TEST(test_format_parse_round_trip)
{
	json_t *root = vectors_load("amounts.json");
	json_t *valid = json_object_get(root, "valid"), *want;
	static const int64_t extra[] = { 0, 1, 9, 10, 11, 99, 100, 12345, 100000001,
		AMOUNT_MAX_FEN - 1, AMOUNT_MAX_FEN };
	const char *s;
	size_t i;

	ck_assert_ptr_nonnull(valid);
	json_object_foreach(valid, s, want)
	{
		int64_t fen = (int64_t)json_integer_value(want), back = -1;
		char out[32];

		amount_format(fen, out, sizeof(out));
		ck_assert_msg(parse(out, &back) == 0 && back == fen,
		    "\"%s\": format(%" PRId64 ") = \"%s\" does not parse back", s, fen, out);
	}
	for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		int64_t back = -1;
		char out[32];

		amount_format(extra[i], out, sizeof(out));
		ck_assert_msg(parse(out, &back) == 0 && back == extra[i],
		    "format(%" PRId64 ") = \"%s\" does not parse back", extra[i], out);
	}
	json_decref(root);
}
END_TEST

static Suite *
amount_suite(void)
{
	Suite *s = suite_create("amount");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_vectors_valid);
	tcase_add_test(tc, test_vectors_invalid);
	tcase_add_test(tc, test_more_invalid);
	tcase_add_test(tc, test_trailing_zero_decimals);
	tcase_add_test(tc, test_uses_len_not_nul);
	tcase_add_test(tc, test_max_boundary);
	suite_add_tcase(s, tc);

	tc = tcase_create("format");
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_format_fits_24_bytes);
	tcase_add_test(tc, test_format_parse_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(amount_suite());
}
