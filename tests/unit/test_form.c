/* form_decode must build the same parameters PHP builds for $_GET / $_POST:
 * the gateways sign what PHP decoded, so any difference breaks signatures. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "vectors.h"

/* Decodes a C string into a fresh `p` and returns the result. */
static enum form_error
decode(struct params *p, const char *s)
{
	params_init(p);
	return form_decode(p, s, strlen(s));
}

/* Asserts that `name` is present with exactly the bytes want[0..wlen). */
static void
assert_value(const struct params *p, const char *name, const char *want, size_t wlen)
{
	const struct param *pr = params_get(p, name);

	ck_assert_msg(pr != NULL, "parameter \"%s\" missing", name);
	ck_assert_msg(pr->vlen == wlen, "parameter \"%s\": vlen %zu, want %zu", name, pr->vlen,
	    wlen);
	ck_assert_mem_eq(pr->value, want, wlen);
	ck_assert_msg(pr->value[wlen] == '\0', "value of \"%s\" not NUL-terminated", name);
}

static void
assert_str(const struct params *p, const char *name, const char *want)
{
	assert_value(p, name, want, strlen(want));
}

START_TEST(test_plus_is_space)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "a=1+2&b=+x+"), FORM_OK);
	ck_assert_uint_eq(p.n, 2);
	assert_str(&p, "a", "1 2");
	assert_str(&p, "b", " x ");
	params_free(&p);
}
END_TEST

START_TEST(test_percent_escapes)
{
	struct params p;

	/* upper and lower case hex digits, and a mix within one escape */
	ck_assert_int_eq(decode(&p, "a=%41%62%2b%2B&b=%e4%BC%9a&c=%7e%7E%3D%26"), FORM_OK);
	assert_str(&p, "a", "Ab++");
	assert_str(&p, "b", "\xe4\xbc\x9a");
	assert_str(&p, "c", "~~=&");
	params_free(&p);
}
END_TEST

START_TEST(test_utf8_value)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "name=VIP%E4%BC%9A%E5%91%98"), FORM_OK);
	assert_str(&p, "name", "VIP会员");
	ck_assert_str_eq(params_value(&p, "name"), "VIP\xe4\xbc\x9a\xe5\x91\x98");
	params_free(&p);

	/* raw (unencoded) UTF-8 bytes pass through unchanged */
	ck_assert_int_eq(decode(&p, "name=VIP会员"), FORM_OK);
	assert_str(&p, "name", "VIP会员");
	params_free(&p);
}
END_TEST

START_TEST(test_bad_escapes_literal)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "a=%zz&b=x%&c=%4&d=%4g&e=%g4&f=%%41&g=%"), FORM_OK);
	ck_assert_uint_eq(p.n, 7);
	assert_str(&p, "a", "%zz");
	assert_str(&p, "b", "x%");
	assert_str(&p, "c", "%4");
	assert_str(&p, "d", "%4g");
	assert_str(&p, "e", "%g4");
	assert_str(&p, "f", "%A");
	assert_str(&p, "g", "%");
	params_free(&p);
}
END_TEST

START_TEST(test_bad_escape_at_end_of_input)
{
	struct params p;
	/* The buffer continues past `len`: the escape must not read beyond it. */
	const char buf[] = "a=1%41";

	params_init(&p);
	ck_assert_int_eq(form_decode(&p, buf, 5), FORM_OK); /* "a=1%4" */
	assert_str(&p, "a", "1%4");
	params_free(&p);
}
END_TEST

START_TEST(test_pair_without_equals)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "a&b=2&c"), FORM_OK);
	ck_assert_uint_eq(p.n, 3);
	assert_str(&p, "a", "");
	assert_str(&p, "b", "2");
	assert_str(&p, "c", "");
	ck_assert_str_eq(p.v[0].name, "a");
	ck_assert_str_eq(p.v[2].name, "c");
	params_free(&p);
}
END_TEST

START_TEST(test_value_keeps_later_equals)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "param=uid=42&x==y="), FORM_OK);
	assert_str(&p, "param", "uid=42");
	assert_str(&p, "x", "=y=");
	params_free(&p);
}
END_TEST

START_TEST(test_empty_name_skipped)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "=x&b=1&=&=y"), FORM_OK);
	ck_assert_uint_eq(p.n, 1);
	ck_assert_str_eq(p.v[0].name, "b");
	assert_str(&p, "b", "1");
	ck_assert_ptr_null(params_get(&p, ""));
	params_free(&p);
}
END_TEST

START_TEST(test_blank_name_skipped)
{
	struct params p;

	/* PHP drops leading spaces, then skips the now empty name. */
	ck_assert_int_eq(decode(&p, "+=x&%20%20=y&b=1"), FORM_OK);
	ck_assert_uint_eq(p.n, 1);
	assert_str(&p, "b", "1");
	params_free(&p);
}
END_TEST

START_TEST(test_empty_segments)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "&&a=1&&&b=2&"), FORM_OK);
	ck_assert_uint_eq(p.n, 2);
	assert_str(&p, "a", "1");
	assert_str(&p, "b", "2");
	params_free(&p);

	ck_assert_int_eq(decode(&p, ""), FORM_OK);
	ck_assert_uint_eq(p.n, 0);
	params_free(&p);

	ck_assert_int_eq(decode(&p, "&&&"), FORM_OK);
	ck_assert_uint_eq(p.n, 0);
	params_free(&p);
}
END_TEST

START_TEST(test_last_value_wins_first_position)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "a=1&b=2&a=3&c=4&a=5"), FORM_OK);
	ck_assert_uint_eq(p.n, 3);
	ck_assert_str_eq(p.v[0].name, "a");
	ck_assert_str_eq(p.v[1].name, "b");
	ck_assert_str_eq(p.v[2].name, "c");
	assert_str(&p, "a", "5");
	ck_assert_str_eq(p.v[0].value, "5");
	params_free(&p);
}
END_TEST

START_TEST(test_repeat_with_empty_value_wins)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "a=1&a"), FORM_OK);
	ck_assert_uint_eq(p.n, 1);
	assert_str(&p, "a", "");
	params_free(&p);
}
END_TEST

START_TEST(test_body_after_query_wins)
{
	struct params p;
	const char *query = "a=1&b=2";
	const char *body = "a=9&c=3";

	params_init(&p);
	ck_assert_int_eq(form_decode(&p, query, strlen(query)), FORM_OK);
	ck_assert_int_eq(form_decode(&p, body, strlen(body)), FORM_OK);
	ck_assert_uint_eq(p.n, 3);
	assert_str(&p, "a", "9");
	assert_str(&p, "b", "2");
	assert_str(&p, "c", "3");
	ck_assert_str_eq(p.v[0].name, "a");
	params_free(&p);
}
END_TEST

START_TEST(test_name_leading_spaces_dropped)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "++a=1&%20b=2&+%20c=3"), FORM_OK);
	ck_assert_uint_eq(p.n, 3);
	assert_str(&p, "a", "1");
	assert_str(&p, "b", "2");
	assert_str(&p, "c", "3");
	params_free(&p);
}
END_TEST

START_TEST(test_name_space_and_dot_become_underscore)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "a.b=1&c+d=2&e%20f=3&g%2Eh=4&+i+j.=5"), FORM_OK);
	ck_assert_uint_eq(p.n, 5);
	assert_str(&p, "a_b", "1");
	assert_str(&p, "c_d", "2");
	assert_str(&p, "e_f", "3");
	assert_str(&p, "g_h", "4");
	assert_str(&p, "i_j_", "5");
	ck_assert_ptr_null(params_get(&p, "a.b"));
	params_free(&p);
}
END_TEST

START_TEST(test_mangled_names_are_one_name)
{
	struct params p;

	/* "a.b" and "a_b" are the same PHP variable: the later one wins. */
	ck_assert_int_eq(decode(&p, "a.b=1&a_b=2&a+b=3"), FORM_OK);
	ck_assert_uint_eq(p.n, 1);
	assert_str(&p, "a_b", "3");
	params_free(&p);
}
END_TEST

START_TEST(test_name_ends_at_nul)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "ab%00cd=1&x=2"), FORM_OK);
	ck_assert_uint_eq(p.n, 2);
	ck_assert_str_eq(p.v[0].name, "ab");
	assert_str(&p, "ab", "1");
	params_free(&p);

	/* a name that is empty once cut at its NUL is skipped */
	ck_assert_int_eq(decode(&p, "%00a=1&x=2"), FORM_OK);
	ck_assert_uint_eq(p.n, 1);
	assert_str(&p, "x", "2");
	params_free(&p);
}
END_TEST

START_TEST(test_value_keeps_nul)
{
	struct params p;

	ck_assert_int_eq(decode(&p, "a=x%00y&b=%00"), FORM_OK);
	assert_value(&p, "a", "x\0y", 3);
	assert_value(&p, "b", "\0", 1);
	params_free(&p);
}
END_TEST

START_TEST(test_array_name_refused)
{
	static const char *const inputs[] = {
		"a[]=1",
		"a[b]=1",
		"x=1&a[=2",
		"%5B=1",
		"a%5B%5D=1",
		"[=1",
	};
	struct params p;
	size_t i;

	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		enum form_error e = decode(&p, inputs[i]);

		ck_assert_msg(e == FORM_ARRAY_NAME, "\"%s\": got %d (%s), want FORM_ARRAY_NAME",
		    inputs[i], (int)e, form_error_str(e));
		params_free(&p);
	}
	/* '[' in a value is an ordinary byte */
	ck_assert_int_eq(decode(&p, "a=[1]&b=%5B"), FORM_OK);
	assert_str(&p, "a", "[1]");
	assert_str(&p, "b", "[");
	params_free(&p);
}
END_TEST

/* "p0=v&p1=v&..." with n distinct names. The caller frees the result. */
static char *
many_params(size_t n, const char *tail)
{
	size_t cap = n * 16 + strlen(tail) + 1, len = 0, i;
	char *s = malloc(cap);

	ck_assert_ptr_nonnull(s);
	s[0] = '\0';
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%sp%zu=v", i ? "&" : "", i);
	snprintf(s + len, cap - len, "%s", tail);
	return s;
}

START_TEST(test_limit_params)
{
	struct params p;
	char *s;

	s = many_params(FORM_MAX_PARAMS, "");
	ck_assert_int_eq(decode(&p, s), FORM_OK);
	ck_assert_uint_eq(p.n, FORM_MAX_PARAMS);
	params_free(&p);
	free(s);

	/* repeats of names already there do not count */
	s = many_params(FORM_MAX_PARAMS, "&p0=w&p63=w&p0=x");
	ck_assert_int_eq(decode(&p, s), FORM_OK);
	ck_assert_uint_eq(p.n, FORM_MAX_PARAMS);
	assert_str(&p, "p0", "x");
	params_free(&p);
	free(s);

	s = many_params(FORM_MAX_PARAMS + 1, "");
	ck_assert_int_eq(decode(&p, s), FORM_TOO_MANY);
	params_free(&p);
	free(s);
}
END_TEST

START_TEST(test_limit_params_across_query_and_body)
{
	struct params p;
	char *s = many_params(FORM_MAX_PARAMS, "");

	ck_assert_int_eq(decode(&p, s), FORM_OK);
	ck_assert_int_eq(form_decode(&p, "p1=z", 4), FORM_OK);
	ck_assert_int_eq(form_decode(&p, "new=z", 5), FORM_TOO_MANY);
	params_free(&p);
	free(s);
}
END_TEST

/* "NAME=1" with a name of n bytes 'n'. */
static char *
long_name(size_t n)
{
	char *s = malloc(n + 3);

	ck_assert_ptr_nonnull(s);
	memset(s, 'n', n);
	memcpy(s + n, "=1", 3);
	return s;
}

START_TEST(test_limit_name)
{
	struct params p;
	char *s;

	s = long_name(FORM_MAX_NAME);
	ck_assert_int_eq(decode(&p, s), FORM_OK);
	ck_assert_uint_eq(p.n, 1);
	ck_assert_uint_eq(strlen(p.v[0].name), FORM_MAX_NAME);
	params_free(&p);
	free(s);

	s = long_name(FORM_MAX_NAME + 1);
	ck_assert_int_eq(decode(&p, s), FORM_NAME_TOO_LONG);
	params_free(&p);
	free(s);
}
END_TEST

/* "v=" followed by n value bytes, each written `enc` ("A" or "%41"). */
static char *
long_value(size_t n, const char *enc)
{
	size_t el = strlen(enc), i;
	char *s = malloc(2 + n * el + 1);

	ck_assert_ptr_nonnull(s);
	memcpy(s, "v=", 2);
	for (i = 0; i < n; i++)
		memcpy(s + 2 + i * el, enc, el);
	s[2 + n * el] = '\0';
	return s;
}

START_TEST(test_limit_value)
{
	struct params p;
	char *s;

	s = long_value(FORM_MAX_VALUE, "A");
	ck_assert_int_eq(decode(&p, s), FORM_OK);
	ck_assert_uint_eq(params_get(&p, "v")->vlen, FORM_MAX_VALUE);
	params_free(&p);
	free(s);

	s = long_value(FORM_MAX_VALUE + 1, "A");
	ck_assert_int_eq(decode(&p, s), FORM_VALUE_TOO_LONG);
	params_free(&p);
	free(s);
}
END_TEST

START_TEST(test_limit_value_after_decoding)
{
	struct params p;
	char *s;

	/* 4096 bytes written as 12288 bytes of escapes: the decoded size counts */
	s = long_value(FORM_MAX_VALUE, "%41");
	ck_assert_int_eq(decode(&p, s), FORM_OK);
	ck_assert_uint_eq(params_get(&p, "v")->vlen, FORM_MAX_VALUE);
	ck_assert_int_eq(params_get(&p, "v")->value[FORM_MAX_VALUE - 1], 'A');
	params_free(&p);
	free(s);

	s = long_value(FORM_MAX_VALUE + 1, "%41");
	ck_assert_int_eq(decode(&p, s), FORM_VALUE_TOO_LONG);
	params_free(&p);
	free(s);
}
END_TEST

START_TEST(test_params_set_get)
{
	struct params p;
	const struct param *pr;

	params_init(&p);
	ck_assert_uint_eq(p.n, 0);
	ck_assert_ptr_null(params_get(&p, "a"));
	ck_assert_ptr_null(params_value(&p, "a"));

	ck_assert_int_eq(params_set(&p, "a", "one", 3), 0);
	ck_assert_int_eq(params_set(&p, "b", "x\0y", 3), 0);
	ck_assert_uint_eq(p.n, 2);
	ck_assert_str_eq(params_value(&p, "a"), "one");
	assert_value(&p, "b", "x\0y", 3);

	/* replacing keeps the position, takes the new length */
	ck_assert_int_eq(params_set(&p, "a", "longer value", 12), 0);
	ck_assert_uint_eq(p.n, 2);
	ck_assert_str_eq(p.v[0].name, "a");
	pr = params_get(&p, "a");
	ck_assert_ptr_nonnull(pr);
	ck_assert_uint_eq(pr->vlen, 12);
	ck_assert_str_eq(params_value(&p, "a"), "longer value");

	/* an empty value is present, not absent */
	ck_assert_int_eq(params_set(&p, "e", "", 0), 0);
	ck_assert_ptr_nonnull(params_value(&p, "e"));
	ck_assert_str_eq(params_value(&p, "e"), "");

	/* names are exact (case-sensitive, no prefix match) */
	ck_assert_ptr_null(params_get(&p, "A"));
	ck_assert_ptr_null(params_get(&p, "aa"));
	params_free(&p);
}
END_TEST

START_TEST(test_params_set_copies)
{
	struct params p;
	char name[8] = "key", value[8] = "val";

	params_init(&p);
	ck_assert_int_eq(params_set(&p, name, value, 3), 0);
	memcpy(name, "zzz", 4);
	memcpy(value, "www", 4);
	ck_assert_str_eq(params_value(&p, "key"), "val");
	ck_assert_ptr_null(params_get(&p, "zzz"));
	params_free(&p);
}
END_TEST

START_TEST(test_params_free_reusable)
{
	struct params p;

	params_init(&p);
	params_free(&p); /* empty */
	ck_assert_int_eq(decode(&p, "a=1"), FORM_OK);
	params_free(&p);
	params_init(&p);
	ck_assert_uint_eq(p.n, 0);
	ck_assert_int_eq(decode(&p, "b=2"), FORM_OK);
	ck_assert_ptr_null(params_get(&p, "a"));
	assert_str(&p, "b", "2");
	params_free(&p);
}
END_TEST

START_TEST(test_error_strings)
{
	static const enum form_error all[] = {
		FORM_OK,
		FORM_TOO_MANY,
		FORM_NAME_TOO_LONG,
		FORM_VALUE_TOO_LONG,
		FORM_ARRAY_NAME,
		FORM_NOMEM,
	};
	size_t i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *s = form_error_str(all[i]);

		ck_assert_msg(s != NULL && *s != '\0', "no text for form error %zu", i);
	}
}
END_TEST

static Suite *
form_suite(void)
{
	Suite *s = suite_create("form");
	TCase *tc = tcase_create("decode");

	tcase_add_test(tc, test_plus_is_space);
	tcase_add_test(tc, test_percent_escapes);
	tcase_add_test(tc, test_utf8_value);
	tcase_add_test(tc, test_bad_escapes_literal);
	tcase_add_test(tc, test_bad_escape_at_end_of_input);
	tcase_add_test(tc, test_pair_without_equals);
	tcase_add_test(tc, test_value_keeps_later_equals);
	tcase_add_test(tc, test_empty_name_skipped);
	tcase_add_test(tc, test_blank_name_skipped);
	tcase_add_test(tc, test_empty_segments);
	tcase_add_test(tc, test_last_value_wins_first_position);
	tcase_add_test(tc, test_repeat_with_empty_value_wins);
	tcase_add_test(tc, test_body_after_query_wins);
	tcase_add_test(tc, test_name_leading_spaces_dropped);
	tcase_add_test(tc, test_name_space_and_dot_become_underscore);
	tcase_add_test(tc, test_mangled_names_are_one_name);
	tcase_add_test(tc, test_name_ends_at_nul);
	tcase_add_test(tc, test_value_keeps_nul);
	tcase_add_test(tc, test_array_name_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_limit_params);
	tcase_add_test(tc, test_limit_params_across_query_and_body);
	tcase_add_test(tc, test_limit_name);
	tcase_add_test(tc, test_limit_value);
	tcase_add_test(tc, test_limit_value_after_decoding);
	suite_add_tcase(s, tc);

	tc = tcase_create("params");
	tcase_add_test(tc, test_params_set_get);
	tcase_add_test(tc, test_params_set_copies);
	tcase_add_test(tc, test_params_free_reusable);
	tcase_add_test(tc, test_error_strings);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(form_suite());
}
