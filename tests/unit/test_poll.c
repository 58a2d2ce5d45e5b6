/* Polling the gateways (SPEC §2.x "Polling"): the exact queries, every kind
 * of answer, and the rule that matters most: a paid order found by a poll
 * gets the event id its callback gets, so one of the two is a duplicate.
 * Answers are built here from the SPEC; signed ones with a small reference
 * signer (checked against the vectors first). */
#include <check.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "crypto.h"
#include "event.h"
#include "family.h"
#include "form.h"
#include "util.h"
#include "vectors.h"

#define API "https://pay.example.com"
/* epay's sweep, through its row of the table (family_epay.c's page size,
 * checked in test_epay_sweep_query). */
#define EPAY_SWEEP_PAGE 50
#define epay_sweep_query(ch, page, q) family_find("epay")->sweep_query((ch), (page), (q))
#define epay_sweep_parse(ch, body, len, ans, max, more) \
	family_find("epay")->sweep_parse((ch), (body), (len), (ans), (max), (more))

/* ---- fixtures ---------------------------------------------------------- */

static void
chan_init(struct channel *ch, const char *name, const char *family, const char *merchant_id,
    const char *key)
{
	memset(ch, 0, sizeof(*ch));
	ch->name = strdup(name);
	ch->family = family_find(family);
	ch->sign_type = SIGN_MD5;
	ch->merchant_id = strdup(merchant_id);
	ch->key = strdup(key);
	ch->key_len = strlen(key);
	ch->api_base = strdup(API);
	ck_assert_msg(ch->family != NULL, "family_find(\"%s\") = NULL", family);
	ck_assert(
	    ch->name != NULL && ch->merchant_id != NULL && ch->key != NULL && ch->api_base != NULL);
}

static void
chan_free(struct channel *ch)
{
	free(ch->name);
	free(ch->merchant_id);
	free(ch->key);
	free(ch->api_base);
	memset(ch, 0, sizeof(*ch));
}

#define EPAY_KEY "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i"
#define PAYINDEX_KEY "t4ig5acnpx4fet4zapshjacjd9o4bhbi"
#define GATEPAY_APPKEY "098f6bcd4621d373cade4e832627b4f6"
#define GATEPAY_SECRET "5ebe2294ecd0e0f08eab7690d2a6ee69"

static void
epay_chan(struct channel *ch)
{
	chan_init(ch, "shop-epay", "epay", "1001", EPAY_KEY);
}

static void
gatepay_chan(struct channel *ch)
{
	chan_init(ch, "shop-gatepay", "gatepay", GATEPAY_APPKEY, GATEPAY_SECRET);
}

static void
payindex_chan(struct channel *ch)
{
	chan_init(ch, "shop-payindex", "payindex", "10002", PAYINDEX_KEY);
}

/* Asserts what every detail must be: one short line, never the key. */
static void
check_detail(const struct channel *ch, const struct poll_answer *a)
{
	size_t n = strnlen(a->detail, sizeof(a->detail));

	ck_assert_msg(n < sizeof(a->detail), "detail is not NUL-terminated");
	ck_assert_msg(strchr(a->detail, '\n') == NULL && strchr(a->detail, '\r') == NULL,
	    "detail is more than one line: %s", a->detail);
	ck_assert_msg(strstr(a->detail, ch->key) == NULL, "detail holds the key: %s", a->detail);
}

/* Parses `body` for `out` into a fresh `a`. */
static enum poll_state
parse(const struct channel *ch, const char *out, const char *body, struct poll_answer *a)
{
	poll_answer_init(a);
	ch->family->poll_parse(ch, out, body, body != NULL ? strlen(body) : 0, a);
	check_detail(ch, a);
	return a->state;
}

static void
expect_state(const struct channel *ch, const char *out, const char *body, enum poll_state want,
    const char *detail_has)
{
	struct poll_answer a;
	enum poll_state got = parse(ch, out, body, &a);

	ck_assert_msg(got == want, "%s: %s answer %s: state %s (%s), want %s", ch->family->name,
	    out, body, poll_state_str(got), a.detail, poll_state_str(want));
	if (detail_has != NULL)
		ck_assert_msg(strstr(a.detail, detail_has) != NULL, "detail \"%s\" lacks \"%s\"",
		    a.detail, detail_has);
	poll_answer_free(&a);
}

/* The vector's params (an object of strings) into a fresh `p`. */
static void
params_from(struct params *p, json_t *obj)
{
	const char *k;
	json_t *v;

	ck_assert_msg(json_is_object(obj), "vector has no params object");
	params_init(p);
	json_object_foreach(obj, k, v)
	{
		ck_assert_msg(json_is_string(v), "vector param %s is not a string", k);
		ck_assert_int_eq(params_set(p, k, json_string_value(v), json_string_length(v)), 0);
	}
}

/* The id verify() gives the vector's callback, on channel `ch`. */
static void
callback_id(const struct channel *ch, json_t *vec, char id[EVENT_ID_LEN + 1])
{
	struct params p;
	struct event ev;
	enum verdict v;

	params_from(&p, json_object_get(vec, "params"));
	memset(&ev, 0, sizeof(ev));
	v = ch->family->verify(ch, &p, time(NULL), &ev);
	ck_assert_msg(v == VERDICT_OK, "vector \"%s\" does not verify: %s",
	    vectors_str(vec, "description"), verdict_str(v));
	memcpy(id, ev.id, EVENT_ID_LEN + 1);
	params_free(&p);
}

static char *
dump(json_t *o)
{
	char *s;

	ck_assert_ptr_nonnull(o);
	s = json_dumps(o, JSON_COMPACT);
	ck_assert_ptr_nonnull(s);
	json_decref(o);
	return s;
}

/* ---- reference payindex signer, from SPEC §2.3 -------------------------- */

/* A field of a hand-made JSON answer: `lit` is its JSON text (a "string"
 * without escapes, or a number); what PHP signed is its text unquoted. */
struct kv {
	const char *k, *lit;
};

static int
kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

/* UPPERCASE md5 of the sorted fields but sign and attach, without "" and
 * "0", joined k=v&..., "&key=KEY" appended. */
static void
pi_sign(const struct kv *fields, const char *key, char out[33])
{
	struct kv v[32];
	char buf[2048];
	size_t n = 0, off = 0, i;

	for (; fields->k != NULL; fields++) {
		ck_assert(n < 32);
		v[n++] = *fields;
	}
	qsort(v, n, sizeof(v[0]), kv_cmp);
	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		const char *val = v[i].lit;
		size_t vl = strlen(val);

		if (val[0] == '"') {
			val++;
			vl -= 2;
		}
		if (strcmp(v[i].k, "sign") == 0 || strcmp(v[i].k, "attach") == 0 || vl == 0 ||
		    (vl == 1 && val[0] == '0'))
			continue;
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s=%.*s", off ? "&" : "",
		    v[i].k, (int)vl, val);
		ck_assert(off < sizeof(buf));
	}
	off += (size_t)snprintf(buf + off, sizeof(buf) - off, "&key=%s", key);
	ck_assert(off < sizeof(buf));
	ck_assert_int_eq(crypto_md5_hex(buf, off, out), 0);
	for (i = 0; out[i] != '\0'; i++)
		out[i] = (char)toupper((unsigned char)out[i]);
}

/* {"k":lit,...,"sign":"SIGN"} (no sign when `sign` is NULL); the caller
 * frees it. */
static char *
pi_body(const struct kv *fields, const char *sign)
{
	char *s = malloc(4096);
	size_t off = 0;

	ck_assert_ptr_nonnull(s);
	s[off++] = '{';
	for (; fields->k != NULL; fields++)
		off += (size_t)snprintf(s + off, 4096 - off, "%s\"%s\":%s", off > 1 ? "," : "",
		    fields->k, fields->lit);
	if (sign != NULL)
		off += (size_t)snprintf(s + off, 4096 - off, "%s\"sign\":\"%s\"",
		    off > 1 ? "," : "", sign);
	ck_assert(off + 2 < 4096);
	s[off++] = '}';
	s[off] = '\0';
	return s;
}

/* A signed answer of `fields` with `key`; the caller frees it. */
static char *
pi_signed(const struct kv *fields, const char *key)
{
	char sign[33];

	pi_sign(fields, key, sign);
	return pi_body(fields, sign);
}

START_TEST(test_reference_signer)
{
	json_t *root = vectors_load("payindex.json");
	json_t *vecs = vectors_array(root, "vectors");
	json_t *vec = json_array_get(vecs, 0), *params = json_object_get(vec, "params");
	struct kv fields[16];
	char quoted[16][128], sign[33];
	const char *k;
	json_t *v;
	size_t n = 0;

	/* Every vector field as a JSON string: the reference gives the vector's sign. */
	json_object_foreach(params, k, v)
	{
		ck_assert(n < 15);
		snprintf(quoted[n], sizeof(quoted[n]), "\"%s\"", json_string_value(v));
		fields[n].k = k;
		fields[n].lit = quoted[n];
		n++;
	}
	fields[n].k = fields[n].lit = NULL;
	pi_sign(fields, vectors_str(vec, "key"), sign);
	ck_assert_str_eq(sign, vectors_str(vec, "sign"));
	json_decref(root);
}
END_TEST

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

	epay_chan(&ch);
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
 * what an answer leaves: the detail (logged, stored in Redis, shown by the
 * admin API) and the raw fields of a paid answer (stored in the event). */
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
	char body[1024];
	const char *v;
	char long_msg[300];

	memset(&cfg, 0, sizeof(cfg));
	cfg.secrets = secs;
	cfg.nsecrets = sizeof(secs) / sizeof(secs[0]);
	epay_chan(&ch);

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

	/* an unknown-order answer whose msg echoes the token: the detail */
	snprintf(body, sizeof(body), "{\"code\":-1,\"msg\":\"bad key %s\"}", token);
	ck_assert_int_eq(parse(&ch, "A1", body, &a), POLL_UNKNOWN);
	ck_assert_ptr_null(strstr(a.detail, token));
	ck_assert_ptr_nonnull(strstr(a.detail, "bad key ***"));
	poll_answer_free(&a);

	/* a paid answer with a secret in an unsigned field: the raw fields */
	snprintf(body, sizeof(body),
	    "{\"code\":1,\"msg\":\"ok\",\"trade_no\":\"T1\",\"out_trade_no\":\"A1\","
	    "\"type\":\"alipay\",\"pid\":1001,\"name\":\"n\",\"money\":\"1.00\","
	    "\"status\":1,\"param\":\"sig=%s\",\"buyer\":\"%s\"}",
	    whsec, token);
	ck_assert_int_eq(parse(&ch, "A1", body, &a), POLL_PAID);
	poll_answer_mask(&a);
	ck_assert_ptr_nonnull(v = params_value(&a.raw, "param"));
	ck_assert_str_eq(v, "sig=***");
	ck_assert_ptr_nonnull(v = params_value(&a.raw, "buyer"));
	ck_assert_str_eq(v, "***");
	ck_assert_uint_eq(params_get(&a.raw, "buyer")->vlen, 3);
	ck_assert_str_eq(params_value(&a.raw, "type"), "alipay");
	ck_assert_str_eq(a.ev.trade_no, "T1");
	poll_answer_free(&a);

	config_set_masking(NULL);
	chan_free(&ch);
}
END_TEST

/* ---- queries ------------------------------------------------------------ */

START_TEST(test_epay_query)
{
	struct channel ch;
	struct poll_query q;

	epay_chan(&ch);
	ck_assert(ch.family->poll_query != NULL && ch.family->poll_parse != NULL);
	ck_assert_int_eq(ch.family->poll_query(&ch, "20160806151343349", &q), 0);
	ck_assert_str_eq(q.method, "GET");
	ck_assert_str_eq(q.url,
	    API "/api.php?act=order&pid=1001&key=" EPAY_KEY "&out_trade_no=20160806151343349");
	ck_assert_ptr_null(q.body);
	poll_query_free(&q);
	ck_assert_ptr_null(q.url);

	/* Values are URL-encoded as PHP does. */
	ck_assert_int_eq(ch.family->poll_query(&ch, "A 1&b=2+会", &q), 0);
	ck_assert_str_eq(q.url,
	    API "/api.php?act=order&pid=1001&key=" EPAY_KEY
		"&out_trade_no=A+1%26b%3D2%2B%E4%BC%9A");
	poll_query_free(&q);
	chan_free(&ch);
}
END_TEST

START_TEST(test_epay_sweep_query)
{
	struct channel ch;
	struct poll_query q;

	epay_chan(&ch);
	ck_assert_int_eq(family_find("epay")->sweep_page, EPAY_SWEEP_PAGE);
	ck_assert_int_eq(epay_sweep_query(&ch, 1, &q), 0);
	ck_assert_str_eq(q.method, "GET");
	ck_assert_str_eq(q.url,
	    API "/api.php?act=orders&pid=1001&key=" EPAY_KEY "&limit=50&page=1&offset=0");
	ck_assert_ptr_null(q.body);
	poll_query_free(&q);
	ck_assert_int_eq(epay_sweep_query(&ch, 3, &q), 0);
	ck_assert_str_eq(q.url,
	    API "/api.php?act=orders&pid=1001&key=" EPAY_KEY "&limit=50&page=3&offset=100");
	poll_query_free(&q);
	ck_assert_int_eq(epay_sweep_query(&ch, 0, &q), -1);
	ck_assert_ptr_null(q.url);
	chan_free(&ch);
}
END_TEST

START_TEST(test_gatepay_query)
{
	json_t *root = vectors_load("gatepay.json");
	json_t *vec = json_object_get(root, "order_check");
	struct channel ch;
	struct poll_query q;
	char want[512];

	ck_assert_msg(json_is_object(vec), "gatepay.json has no order_check");
	chan_init(&ch, "shop-gatepay", "gatepay", vectors_str(vec, "appkey"),
	    vectors_str(vec, "appsecret"));
	ck_assert_int_eq(ch.family->poll_query(&ch, vectors_str(vec, "out_order_id"), &q), 0);
	ck_assert_str_eq(q.method, "GET");
	snprintf(want, sizeof(want), "%s/api/order/check?appkey=%s&out_order_id=%s&sign=%s", API,
	    vectors_str(vec, "appkey"), vectors_str(vec, "out_order_id"), vectors_str(vec, "sign"));
	ck_assert_str_eq(q.url, want);
	ck_assert_ptr_null(q.body);
	ck_assert_ptr_null(strstr(q.url, ch.key));
	poll_query_free(&q);
	chan_free(&ch);
	json_decref(root);
}
END_TEST

START_TEST(test_payindex_query)
{
	json_t *root = vectors_load("payindex.json");
	json_t *vec = json_object_get(root, "trade_query");
	json_t *params = json_object_get(vec, "params");
	struct channel ch;
	struct poll_query q;
	char want[512];

	ck_assert_msg(json_is_object(params), "payindex.json has no trade_query params");
	chan_init(&ch, "shop-payindex", "payindex", vectors_str(params, "pay_memberid"),
	    vectors_str(vec, "key"));
	ck_assert_int_eq(ch.family->poll_query(&ch, vectors_str(params, "pay_orderid"), &q), 0);
	ck_assert_str_eq(q.method, "POST");
	ck_assert_str_eq(q.url, API "/Pay_Trade_query.html");
	snprintf(want, sizeof(want), "pay_memberid=%s&pay_orderid=%s&pay_md5sign=%s",
	    vectors_str(params, "pay_memberid"), vectors_str(params, "pay_orderid"),
	    vectors_str(params, "pay_md5sign"));
	ck_assert_ptr_nonnull(q.body);
	ck_assert_str_eq(q.body, want);
	ck_assert_uint_eq(q.body_len, strlen(want));
	ck_assert_ptr_null(strstr(q.body, ch.key));
	poll_query_free(&q);
	chan_free(&ch);
	json_decref(root);
}
END_TEST

/* ---- epay answers ------------------------------------------------------- */

START_TEST(test_epay_paid)
{
	struct channel ch;
	struct poll_answer a;
	char id[EVENT_ID_LEN + 1];
	const char *body = "{\"code\":1,\"msg\":\"查询订单号成功！\",\"trade_no\":"
			   "\"20160806151343349021\",\"out_trade_no\":\"20160806151343349\","
			   "\"api_trade_no\":\"2026112222001400001\",\"type\":\"alipay\","
			   "\"pid\":1001,\"addtime\":\"2016-08-06 22:55:40\",\"endtime\":"
			   "\"2016-08-06 22:55:52\",\"name\":\"VIP会员\",\"money\":\"1.00\","
			   "\"status\":1,\"param\":\"uid=42\",\"buyer\":\"\"}";

	epay_chan(&ch);
	ck_assert_int_eq(parse(&ch, "20160806151343349", body, &a), POLL_PAID);
	ck_assert_str_eq(a.ev.family, "epay");
	ck_assert_str_eq(a.ev.channel, "shop-epay");
	ck_assert_str_eq(a.ev.merchant_id, "1001");
	ck_assert_str_eq(a.ev.trade_no, "20160806151343349021");
	ck_assert_str_eq(a.ev.out_trade_no, "20160806151343349");
	ck_assert_str_eq(a.ev.status, "paid");
	ck_assert_int_eq(a.ev.type, EVENT_PAID);
	ck_assert_int_eq(a.ev.source, SOURCE_POLL);
	ck_assert_str_eq(a.ev.amount, "1.00");
	ck_assert_int_eq(a.ev.amount_fen, 100);
	ck_assert_str_eq(a.ev.paid_amount, "1.00");
	ck_assert_int_eq(a.ev.paid_amount_fen, 100);
	ck_assert_str_eq(a.ev.method, "alipay");
	ck_assert_str_eq(a.ev.subject, "VIP会员");
	ck_assert_str_eq(a.ev.passthrough, "uid=42");
	ck_assert_str_eq(a.ev.gateway_time, "2016-08-06 22:55:52");
	ck_assert_ptr_eq(a.ev.raw, &a.raw);
	ck_assert_str_eq(params_value(&a.raw, "pid"), "1001");
	ck_assert_str_eq(params_value(&a.raw, "status"), "1");
	ck_assert_str_eq(params_value(&a.raw, "buyer"), "");
	event_make_id(id, "shop-epay", "20160806151343349021", "paid");
	ck_assert_str_eq(a.ev.id, id);
	/* The event serializes, borrowing only from the answer and channel. */
	{
		char *js = event_to_json(&a.ev);

		ck_assert_ptr_nonnull(js);
		ck_assert_ptr_nonnull(strstr(js, "\"source\":\"poll\""));
		free(js);
	}
	poll_answer_free(&a);
	chan_free(&ch);
}
END_TEST

/* Every paid vector callback, found instead by a poll, gets the same id. */
START_TEST(test_epay_ids_match_callbacks)
{
	json_t *root = vectors_load("epay.json");
	json_t *vecs = vectors_array(root, "vectors"), *vec;
	size_t i, checked = 0;

	json_array_foreach(vecs, i, vec)
	{
		json_t *p = json_object_get(vec, "params");
		struct channel ch;
		struct poll_answer a;
		char id[EVENT_ID_LEN + 1];
		char *body;

		if (strcmp(vectors_str(p, "trade_status"), "TRADE_SUCCESS") != 0)
			continue;
		chan_init(&ch, "shop-epay", "epay", vectors_str(p, "pid"), vectors_str(vec, "key"));
		callback_id(&ch, vec, id);
		body = dump(json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:i}", "code", 1, "trade_no",
		    vectors_str(p, "trade_no"), "out_trade_no", vectors_str(p, "out_trade_no"),
		    "money", vectors_str(p, "money"), "type", vectors_str(p, "type"), "name",
		    vectors_str(p, "name"), "status", 1));
		ck_assert_int_eq(parse(&ch, vectors_str(p, "out_trade_no"), body, &a), POLL_PAID);
		ck_assert_msg(strcmp(a.ev.id, id) == 0, "%s: poll id %s, callback id %s",
		    vectors_str(vec, "description"), a.ev.id, id);
		ck_assert_int_eq(a.ev.amount_fen, a.ev.paid_amount_fen);
		poll_answer_free(&a);
		free(body);
		chan_free(&ch);
		checked++;
	}
	ck_assert_uint_gt(checked, 0);
	json_decref(root);
}
END_TEST

START_TEST(test_epay_states)
{
	struct channel ch;

	epay_chan(&ch);
	expect_state(&ch, "A1", "{\"code\":1,\"out_trade_no\":\"A1\",\"status\":0}", POLL_UNPAID,
	    NULL);
	expect_state(&ch, "A1", "{\"code\":\"1\",\"out_trade_no\":\"A1\",\"status\":\"0\"}",
	    POLL_UNPAID, NULL);
	expect_state(&ch, "A1", "{\"code\":1,\"status\":2,\"trade_no\":\"T\",\"money\":\"1\"}",
	    POLL_OTHER, "refunded");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":\"3\"}", POLL_OTHER, "frozen");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":7}", POLL_ERROR, "status");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":\"paid\"}", POLL_ERROR, "status");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":1.5}", POLL_ERROR, "status");
	expect_state(&ch, "A1", "{\"code\":1}", POLL_ERROR, "no status");
	expect_state(&ch, "A1", "{\"msg\":\"x\",\"status\":1}", POLL_ERROR, "no code");
	/* Not found, or refused: ask again later. */
	expect_state(&ch, "A1", "{\"code\":-1,\"msg\":\"订单编号不存在！\"}", POLL_UNKNOWN,
	    "订单编号不存在！");
	expect_state(&ch, "A1", "{\"code\":-2,\"msg\":\"line one\\nline two\"}", POLL_UNKNOWN,
	    "line one line two");
	expect_state(&ch, "A1", "{\"code\":0}", POLL_UNKNOWN, "code 0");
	expect_state(&ch, "A1", "{\"code\":\"-3\",\"msg\":\"KEY校验失败\"}", POLL_UNKNOWN,
	    "KEY校验失败");
	chan_free(&ch);
}
END_TEST

START_TEST(test_epay_garbage)
{
	struct channel ch;

	epay_chan(&ch);
	expect_state(&ch, "A1", "", POLL_ERROR, "empty");
	expect_state(&ch, "A1", NULL, POLL_ERROR, "empty");
	expect_state(&ch, "A1", "<html>502 Bad Gateway</html>", POLL_ERROR, "not JSON");
	expect_state(&ch, "A1", "{\"code\":1,", POLL_ERROR, "not JSON");
	expect_state(&ch, "A1", "[1,2]", POLL_ERROR, "not a JSON object");
	expect_state(&ch, "A1", "\"success\"", POLL_ERROR, NULL);
	expect_state(&ch, "A1", "null", POLL_ERROR, NULL);
	/* Paid but unusable: never an event. */
	expect_state(&ch, "A1", "{\"code\":1,\"status\":1,\"money\":\"1.00\"}", POLL_ERROR,
	    "trade_no");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":1,\"trade_no\":\"\",\"money\":\"1.00\"}",
	    POLL_ERROR, "trade_no");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":1,\"trade_no\":\"T\"}", POLL_ERROR,
	    "money");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":1,\"trade_no\":\"T\",\"money\":\"1.001\"}",
	    POLL_ERROR, "money");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":1,\"trade_no\":\"T\",\"money\":-1}",
	    POLL_ERROR, "money");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":1,\"trade_no\":\"T\",\"money\":\"1e2\"}",
	    POLL_ERROR, "money");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":1,\"trade_no\":\"T\",\"money\":{}}",
	    POLL_ERROR, "money");
	/* Another order, or another merchant's. */
	expect_state(&ch, "A1",
	    "{\"code\":1,\"status\":1,\"trade_no\":\"T\",\"money\":\"1\",\"out_trade_no\":\"A2\"}",
	    POLL_ERROR, "A2");
	expect_state(&ch, "A1", "{\"code\":1,\"status\":0,\"out_trade_no\":\"A2\"}", POLL_ERROR,
	    "A2");
	expect_state(&ch, "A1",
	    "{\"code\":1,\"status\":1,\"trade_no\":\"T\",\"money\":\"1\",\"pid\":1002}", POLL_ERROR,
	    "pid");
	chan_free(&ch);
}
END_TEST

/* PHP platforms print money as a float: the fen stay exact. */
START_TEST(test_epay_json_money)
{
	static const struct {
		const char *money, *text;
		int64_t fen;
	} cases[] = {
		{ "0.5", "0.5", 50 },
		{ "100.1", "100.1", 10010 },
		{ "1", "1", 100 },
		{ "\"1.00\"", "1.00", 100 },
		{ "100.0", "100", 10000 },
		{ "0.01", "0.01", 1 },
		{ "19.99", "19.99", 1999 },
		{ "\"100.0000\"", "100.0000", 10000 },
		{ "88", "88", 8800 },
	};
	struct channel ch;
	size_t i;

	epay_chan(&ch);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct poll_answer a;
		char body[256];

		snprintf(body, sizeof(body),
		    "{\"code\":1,\"status\":1,\"trade_no\":\"T%zu\",\"money\":%s}", i,
		    cases[i].money);
		ck_assert_msg(parse(&ch, "A1", body, &a) == POLL_PAID, "money %s: %s",
		    cases[i].money, a.detail);
		ck_assert_str_eq(a.ev.amount, cases[i].text);
		ck_assert_str_eq(params_value(&a.raw, "money"), cases[i].text);
		ck_assert_int_eq(a.ev.amount_fen, cases[i].fen);
		ck_assert_int_eq(a.ev.paid_amount_fen, cases[i].fen);
		poll_answer_free(&a);
	}
	chan_free(&ch);
}
END_TEST

/* An answer without out_trade_no: the event keeps its own copy of the
 * queried id, not the caller's string. */
START_TEST(test_epay_out_trade_no_copied)
{
	struct channel ch;
	struct poll_answer a;
	char out[16] = "ORDER-7";

	epay_chan(&ch);
	ck_assert_int_eq(parse(&ch, out,
			     "{\"code\":1,\"status\":1,\"trade_no\":\"T7\",\"money\":\"7\"}", &a),
	    POLL_PAID);
	memset(out, 'x', sizeof(out) - 1);
	ck_assert_str_eq(a.ev.out_trade_no, "ORDER-7");
	ck_assert_ptr_null(a.ev.subject);
	ck_assert_ptr_null(a.ev.passthrough);
	ck_assert_ptr_null(a.ev.gateway_time);
	poll_answer_free(&a);
	chan_free(&ch);
}
END_TEST

START_TEST(test_epay_detail_hides_key)
{
	struct channel ch;
	char body[512];

	epay_chan(&ch);
	/* A platform that echoes the request into its error. */
	snprintf(body, sizeof(body),
	    "{\"code\":-1,\"msg\":\"bad request " API "/api.php?act=order&pid=1001&key=%s\"}",
	    ch.key);
	expect_state(&ch, "A1", body, POLL_UNKNOWN, "***");
	snprintf(body, sizeof(body), "{\"code\":1,\"status\":\"%s\"}", ch.key);
	expect_state(&ch, "A1", body, POLL_ERROR, "***");
	snprintf(body, sizeof(body), "<html>%s</html>", ch.key);
	expect_state(&ch, "A1", body, POLL_ERROR, NULL);
	chan_free(&ch);
}
END_TEST

/* ---- epay sweep ----------------------------------------------------------- */

static char *
sweep_page(int n, const char *extra)
{
	struct sbuf s;
	int i;

	sbuf_init(&s);
	ck_assert_int_eq(sbuf_adds(&s, "{\"code\":1,\"msg\":\"ok\",\"data\":["), 0);
	if (extra != NULL)
		ck_assert_int_eq(sbuf_printf(&s, "%s%s", extra, n > 0 ? "," : ""), 0);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(sbuf_printf(&s,
				     "%s{\"trade_no\":\"T%d\",\"out_trade_no\":\"O%d\","
				     "\"money\":\"%d.50\",\"status\":%d,\"pid\":\"1001\"}",
				     i > 0 ? "," : "", i, i, i + 1, i % 2),
		    0);
	ck_assert_int_eq(sbuf_adds(&s, "]}"), 0);
	return sbuf_steal(&s);
}

START_TEST(test_sweep_mixed)
{
	struct channel ch;
	struct poll_answer ans[8];
	json_t *root = vectors_load("epay.json");
	json_t *vec = json_array_get(vectors_array(root, "vectors"), 0);
	json_t *p = json_object_get(vec, "params");
	char id[EVENT_ID_LEN + 1], body[2048];
	bool more = true;
	int n, i;

	chan_init(&ch, "shop-epay", "epay", vectors_str(p, "pid"), vectors_str(vec, "key"));
	callback_id(&ch, vec, id);
	snprintf(body, sizeof(body),
	    "{\"code\":1,\"msg\":\"ok\",\"count\":5,\"data\":["
	    "{\"trade_no\":\"%s\",\"out_trade_no\":\"%s\",\"money\":%s,\"type\":\"alipay\","
	    "\"name\":\"VIP会员\",\"status\":1},"
	    "{\"trade_no\":\"T2\",\"out_trade_no\":\"O2\",\"money\":\"2.00\",\"status\":0},"
	    "{\"trade_no\":\"T3\",\"out_trade_no\":\"O3\",\"money\":\"3.00\",\"status\":\"2\"},"
	    "{\"trade_no\":\"T4\",\"money\":\"4.00\",\"status\":1},"
	    "\"junk\","
	    "{\"trade_no\":\"T6\",\"out_trade_no\":\"O6\",\"money\":0.5,\"status\":\"1\"}]}",
	    vectors_str(p, "trade_no"), vectors_str(p, "out_trade_no"), vectors_str(p, "money"));
	n = epay_sweep_parse(&ch, body, strlen(body), ans, 8, &more);
	ck_assert_int_eq(n, 6);
	ck_assert(!more);
	for (i = 0; i < n; i++)
		check_detail(&ch, &ans[i]);
	ck_assert_int_eq(ans[0].state, POLL_PAID);
	ck_assert_str_eq(ans[0].ev.id, id);
	ck_assert_str_eq(ans[0].ev.out_trade_no, vectors_str(p, "out_trade_no"));
	ck_assert_str_eq(ans[0].ev.subject, "VIP会员");
	ck_assert_int_eq(ans[1].state, POLL_UNPAID);
	ck_assert_str_eq(params_value(&ans[1].raw, "out_trade_no"), "O2");
	ck_assert_int_eq(ans[2].state, POLL_OTHER);
	ck_assert_int_eq(ans[3].state, POLL_ERROR); /* no out_trade_no */
	ck_assert_int_eq(ans[4].state, POLL_ERROR); /* not an object */
	ck_assert_int_eq(ans[5].state, POLL_PAID);
	ck_assert_str_eq(ans[5].ev.out_trade_no, "O6");
	ck_assert_str_eq(ans[5].ev.amount, "0.5");
	ck_assert_int_eq(ans[5].ev.amount_fen, 50);
	event_make_id(id, "shop-epay", "T6", "paid");
	ck_assert_str_eq(ans[5].ev.id, id);
	for (i = 0; i < n; i++)
		poll_answer_free(&ans[i]);
	chan_free(&ch);
	json_decref(root);
}
END_TEST

START_TEST(test_sweep_full_page)
{
	struct channel ch;
	struct poll_answer ans[EPAY_SWEEP_PAGE + 1];
	char *body;
	bool more = false;
	int n, i;

	epay_chan(&ch);
	body = sweep_page(EPAY_SWEEP_PAGE, NULL);
	n = epay_sweep_parse(&ch, body, strlen(body), ans, EPAY_SWEEP_PAGE + 1, &more);
	ck_assert_int_eq(n, EPAY_SWEEP_PAGE);
	ck_assert(more);
	for (i = 0; i < n; i++) {
		char want[16];

		ck_assert_int_eq(ans[i].state, i % 2 ? POLL_PAID : POLL_UNPAID);
		if (ans[i].state == POLL_PAID) {
			snprintf(want, sizeof(want), "O%d", i);
			ck_assert_str_eq(ans[i].ev.out_trade_no, want);
			ck_assert_int_eq(ans[i].ev.amount_fen, (i + 1) * 100 + 50);
		}
		poll_answer_free(&ans[i]);
	}

	/* `max` is respected: the rest of the page is not written. */
	memset(ans, 0xa5, sizeof(ans));
	n = epay_sweep_parse(&ch, body, strlen(body), ans, 10, &more);
	ck_assert_int_eq(n, 10);
	ck_assert(more);
	for (i = 0; i < n; i++)
		poll_answer_free(&ans[i]);
	for (i = 10; i < EPAY_SWEEP_PAGE + 1; i++) {
		unsigned char *b = (unsigned char *)&ans[i];
		size_t k;

		for (k = 0; k < sizeof(ans[i]); k++)
			ck_assert_msg(b[k] == 0xa5, "answer %d written beyond max", i);
	}
	n = epay_sweep_parse(&ch, body, strlen(body), ans, 0, &more);
	ck_assert_int_eq(n, 0);
	free(body);

	/* A short page: the last one. */
	body = sweep_page(3, NULL);
	n = epay_sweep_parse(&ch, body, strlen(body), ans, EPAY_SWEEP_PAGE, &more);
	ck_assert_int_eq(n, 3);
	ck_assert(!more);
	for (i = 0; i < n; i++)
		poll_answer_free(&ans[i]);
	free(body);

	body = sweep_page(0, NULL);
	more = true;
	n = epay_sweep_parse(&ch, body, strlen(body), ans, EPAY_SWEEP_PAGE, &more);
	ck_assert_int_eq(n, 0);
	ck_assert(!more);
	free(body);
	chan_free(&ch);
}
END_TEST

static void
sweep_fails(const struct channel *ch, const char *body, const char *detail_has)
{
	struct poll_answer ans[2];
	bool more = true;
	int n;

	n = epay_sweep_parse(ch, body, body ? strlen(body) : 0, ans, 2, &more);
	ck_assert_msg(n == -1, "sweep of %s gave %d", body, n);
	ck_assert(!more);
	check_detail(ch, &ans[0]);
	ck_assert_int_ne(ans[0].state, POLL_PAID);
	if (detail_has != NULL)
		ck_assert_msg(strstr(ans[0].detail, detail_has) != NULL,
		    "detail \"%s\" lacks \"%s\"", ans[0].detail, detail_has);
	/* Freeing it anyway is harmless. */
	poll_answer_free(&ans[0]);
	n = epay_sweep_parse(ch, body, body ? strlen(body) : 0, ans, 0, &more);
	ck_assert_int_eq(n, -1);
}

START_TEST(test_sweep_errors)
{
	struct channel ch;
	char body[256];

	epay_chan(&ch);
	sweep_fails(&ch, "{\"code\":-1,\"msg\":\"查询订单失败\"}", "查询订单失败");
	sweep_fails(&ch, "{\"code\":1,\"data\":\"none\"}", "data");
	sweep_fails(&ch, "{\"code\":1}", "data");
	sweep_fails(&ch, "{\"data\":[]}", "code");
	sweep_fails(&ch, "<html>", "JSON");
	sweep_fails(&ch, "", NULL);
	sweep_fails(&ch, NULL, NULL);
	snprintf(body, sizeof(body), "{\"code\":-1,\"msg\":\"key %s wrong\"}", ch.key);
	sweep_fails(&ch, body, "***");
	chan_free(&ch);
}
END_TEST

/* ---- gatepay answers ---------------------------------------------------- */

START_TEST(test_gatepay_paid_ids_match_callbacks)
{
	json_t *root = vectors_load("gatepay.json");
	json_t *vecs = vectors_array(root, "vectors"), *vec;
	size_t i;

	json_array_foreach(vecs, i, vec)
	{
		json_t *p = json_object_get(vec, "params");
		struct channel ch;
		struct poll_answer a;
		char id[EVENT_ID_LEN + 1];
		char *body;

		chan_init(&ch, "shop-gatepay", "gatepay", vectors_str(vec, "appkey"),
		    vectors_str(vec, "appsecret"));
		callback_id(&ch, vec, id);
		body = dump(json_pack("{s:i,s:s,s:{s:s,s:s,s:s,s:s,s:s}}", "code", 100, "msg", "ok",
		    "data", "order_id", vectors_str(p, "order_id"), "order_name", "VIP",
		    "order_price", vectors_str(p, "price"), "order_type", vectors_str(p, "type"),
		    "order_status", i % 2 ? "success" : "paid"));
		ck_assert_int_eq(parse(&ch, vectors_str(p, "out_order_id"), body, &a), POLL_PAID);
		ck_assert_msg(strcmp(a.ev.id, id) == 0, "%s: poll id %s, callback id %s",
		    vectors_str(vec, "description"), a.ev.id, id);
		ck_assert_str_eq(a.ev.family, "gatepay");
		ck_assert_str_eq(a.ev.trade_no, vectors_str(p, "order_id"));
		ck_assert_str_eq(a.ev.out_trade_no, vectors_str(p, "out_order_id"));
		ck_assert_str_eq(a.ev.amount, vectors_str(p, "price"));
		ck_assert_str_eq(a.ev.paid_amount, vectors_str(p, "price"));
		ck_assert_int_eq(a.ev.amount_fen, a.ev.paid_amount_fen);
		ck_assert_str_eq(a.ev.method, vectors_str(p, "type"));
		ck_assert_str_eq(a.ev.subject, "VIP");
		ck_assert_str_eq(a.ev.status, "paid");
		ck_assert_int_eq(a.ev.type, EVENT_PAID);
		poll_answer_free(&a);
		free(body);
		chan_free(&ch);
	}
	json_decref(root);
}
END_TEST

START_TEST(test_gatepay_states)
{
	struct channel ch;
	struct poll_answer a;
	char id[EVENT_ID_LEN + 1];

	gatepay_chan(&ch);
	/* Numbers where strings were expected. */
	ck_assert_int_eq(parse(&ch, "X1",
			     "{\"code\":100,\"data\":{\"order_id\":522,\"order_name\":\"n\","
			     "\"order_price\":1.88,\"order_type\":\"alipay\",\"order_status\":"
			     "\"PAID\"}}",
			     &a),
	    POLL_PAID);
	ck_assert_str_eq(a.ev.trade_no, "522");
	ck_assert_str_eq(a.ev.amount, "1.88");
	ck_assert_int_eq(a.ev.amount_fen, 188);
	ck_assert_str_eq(a.ev.out_trade_no, "X1");
	event_make_id(id, "shop-gatepay", "522", "paid");
	ck_assert_str_eq(a.ev.id, id);
	poll_answer_free(&a);

	expect_state(&ch, "X1",
	    "{\"code\":100,\"data\":{\"order_id\":\"1\",\"order_price\":\"1\",\"order_status\":"
	    "\"unpaid\"}}",
	    POLL_UNPAID, NULL);
	expect_state(&ch, "X1", "{\"code\":100,\"data\":{\"order_status\":\"wait\"}}", POLL_UNPAID,
	    NULL);
	expect_state(&ch, "X1", "{\"code\":100,\"data\":{\"order_status\":\"pending\"}}",
	    POLL_UNPAID, NULL);
	expect_state(&ch, "X1", "{\"code\":100,\"data\":{\"order_status\":\"\"}}", POLL_UNPAID,
	    NULL);
	expect_state(&ch, "X1", "{\"code\":100,\"data\":{\"order_status\":\"paid?\"}}", POLL_ERROR,
	    "order_status");
	expect_state(&ch, "X1", "{\"code\":100,\"data\":{\"order_status\":7}}", POLL_ERROR,
	    "order_status");
	expect_state(&ch, "X1", "{\"code\":100,\"data\":{}}", POLL_ERROR, "order_status");
	/* Any other code: not known (yet). */
	expect_state(&ch, "X1", "{\"code\":101,\"msg\":\"订单不存在\"}", POLL_UNKNOWN,
	    "订单不存在");
	expect_state(&ch, "X1", "{\"code\":\"400\",\"msg\":\"sign error\",\"data\":[]}",
	    POLL_UNKNOWN, "sign error");
	/* Garbage. */
	expect_state(&ch, "X1", "{\"code\":100}", POLL_ERROR, "data");
	expect_state(&ch, "X1", "{\"code\":100,\"data\":[1]}", POLL_ERROR, "data");
	expect_state(&ch, "X1", "{\"data\":{\"order_status\":\"paid\"}}", POLL_ERROR, "code");
	expect_state(&ch, "X1", "ok", POLL_ERROR, "JSON");
	expect_state(&ch, "X1",
	    "{\"code\":100,\"data\":{\"order_price\":\"1.00\",\"order_status\":\"paid\"}}",
	    POLL_ERROR, "order_id");
	expect_state(&ch, "X1",
	    "{\"code\":100,\"data\":{\"order_id\":\"1\",\"order_price\":\"1.001\","
	    "\"order_status\":\"paid\"}}",
	    POLL_ERROR, "order_price");
	expect_state(&ch, "X1",
	    "{\"code\":100,\"data\":{\"order_id\":\"1\",\"order_status\":\"success\"}}", POLL_ERROR,
	    "order_price");
	expect_state(&ch, "X1",
	    "{\"code\":100,\"data\":{\"order_id\":\"1\",\"out_order_id\":\"X2\","
	    "\"order_price\":\"1\",\"order_status\":\"paid\"}}",
	    POLL_ERROR, "X2");
	chan_free(&ch);
}
END_TEST

START_TEST(test_gatepay_detail_hides_key)
{
	struct channel ch;
	char body[256];

	gatepay_chan(&ch);
	snprintf(body, sizeof(body), "{\"code\":-1,\"msg\":\"appsecret %s invalid\"}", ch.key);
	expect_state(&ch, "X1", body, POLL_UNKNOWN, "***");
	chan_free(&ch);
}
END_TEST

/* ---- payindex answers ----------------------------------------------------- */

static const struct kv pi_paid[] = {
	{ "memberid", "\"10002\"" },
	{ "orderid", "\"20210928114755985410\"" },
	{ "amount", "\"100.0000\"" },
	{ "true_amount", "\"99.50\"" },
	{ "time_end", "\"2021-09-28 11:50:12\"" },
	{ "transaction_id", "\"20210928114755985410123\"" },
	{ "returncode", "\"00\"" },
	{ "trade_state", "\"SUCCESS\"" },
	{ "attach", "\"uid=9\"" },
	{ NULL, NULL },
};

START_TEST(test_payindex_paid)
{
	struct channel ch;
	struct poll_answer a;
	char id[EVENT_ID_LEN + 1];
	char *body = pi_signed(pi_paid, PAYINDEX_KEY);

	payindex_chan(&ch);
	ck_assert_int_eq(parse(&ch, "20210928114755985410", body, &a), POLL_PAID);
	ck_assert_str_eq(a.ev.family, "payindex");
	ck_assert_str_eq(a.ev.trade_no, "20210928114755985410123");
	ck_assert_str_eq(a.ev.out_trade_no, "20210928114755985410");
	ck_assert_str_eq(a.ev.amount, "100.0000");
	ck_assert_int_eq(a.ev.amount_fen, 10000);
	ck_assert_str_eq(a.ev.paid_amount, "99.50");
	ck_assert_int_eq(a.ev.paid_amount_fen, 9950);
	ck_assert_str_eq(a.ev.gateway_time, "2021-09-28 11:50:12");
	ck_assert_str_eq(a.ev.passthrough, "uid=9");
	ck_assert_str_eq(a.ev.status, "paid");
	ck_assert_int_eq(a.ev.type, EVENT_PAID);
	ck_assert_int_eq(a.ev.source, SOURCE_POLL);
	event_make_id(id, "shop-payindex", "20210928114755985410123", "paid");
	ck_assert_str_eq(a.ev.id, id);
	poll_answer_free(&a);
	free(body);
	chan_free(&ch);
}
END_TEST

/* Every paid vector callback, found instead by a poll, gets the same id. */
START_TEST(test_payindex_ids_match_callbacks)
{
	json_t *root = vectors_load("payindex.json");
	json_t *vecs = vectors_array(root, "vectors"), *vec;
	size_t i, checked = 0;

	json_array_foreach(vecs, i, vec)
	{
		json_t *p = json_object_get(vec, "params");
		static const char *const names[] = { "memberid", "orderid", "amount", "true_amount",
			"transaction_id", NULL };
		char lits[8][128];
		struct kv fields[10];
		struct channel ch;
		struct poll_answer a;
		char id[EVENT_ID_LEN + 1];
		char *body;
		size_t n = 0, k;

		if (strcmp(vectors_str(p, "returncode"), "00") != 0)
			continue;
		for (k = 0; names[k] != NULL; k++) {
			json_t *v = json_object_get(p, names[k]);

			if (!json_is_string(v))
				continue;
			snprintf(lits[n], sizeof(lits[n]), "\"%s\"", json_string_value(v));
			fields[n].k = names[k];
			fields[n].lit = lits[n];
			n++;
		}
		fields[n++] = (struct kv){ "returncode", "\"00\"" };
		fields[n++] = (struct kv){ "trade_state", "\"SUCCESS\"" };
		fields[n] = (struct kv){ NULL, NULL };
		chan_init(&ch, "shop-payindex", "payindex", vectors_str(p, "memberid"),
		    vectors_str(vec, "key"));
		callback_id(&ch, vec, id);
		body = pi_signed(fields, vectors_str(vec, "key"));
		ck_assert_int_eq(parse(&ch, vectors_str(p, "orderid"), body, &a), POLL_PAID);
		ck_assert_msg(strcmp(a.ev.id, id) == 0, "%s: poll id %s, callback id %s",
		    vectors_str(vec, "description"), a.ev.id, id);
		poll_answer_free(&a);
		free(body);
		chan_free(&ch);
		checked++;
	}
	ck_assert_uint_gt(checked, 0);
	json_decref(root);
}
END_TEST

START_TEST(test_payindex_signature)
{
	struct kv fields[16];
	struct channel ch;
	struct poll_answer a;
	char sign[33], *body;
	size_t i, n;

	payindex_chan(&ch);
	for (n = 0; pi_paid[n].k != NULL; n++)
		fields[n] = pi_paid[n];
	fields[n] = (struct kv){ NULL, NULL };

	/* Tampered after signing: amount, then an added field. */
	pi_sign(pi_paid, PAYINDEX_KEY, sign);
	fields[2].lit = "\"1.0000\"";
	body = pi_body(fields, sign);
	expect_state(&ch, "20210928114755985410", body, POLL_ERROR, "bad signature");
	free(body);
	fields[2] = pi_paid[2];
	fields[n] = (struct kv){ "bankcode", "\"901\"" };
	fields[n + 1] = (struct kv){ NULL, NULL };
	body = pi_body(fields, sign);
	expect_state(&ch, "20210928114755985410", body, POLL_ERROR, "bad signature");
	free(body);
	/* ... but an added field that is signed verifies, and is the method. */
	body = pi_signed(fields, PAYINDEX_KEY);
	ck_assert_int_eq(parse(&ch, "20210928114755985410", body, &a), POLL_PAID);
	ck_assert_str_eq(a.ev.method, "901");
	poll_answer_free(&a);
	free(body);
	fields[n] = (struct kv){ NULL, NULL };

	/* attach is not signed. */
	fields[8].lit = "\"changed\"";
	body = pi_body(fields, sign);
	expect_state(&ch, "20210928114755985410", body, POLL_PAID, NULL);
	free(body);
	fields[8] = pi_paid[8];

	/* Missing, empty, wrong key, lower case. */
	body = pi_body(fields, NULL);
	expect_state(&ch, "20210928114755985410", body, POLL_ERROR, "bad signature");
	free(body);
	body = pi_body(fields, "");
	expect_state(&ch, "20210928114755985410", body, POLL_ERROR, "bad signature");
	free(body);
	body = pi_signed(fields, "another-key");
	expect_state(&ch, "20210928114755985410", body, POLL_ERROR, "bad signature");
	free(body);
	for (i = 0; sign[i] != '\0'; i++)
		sign[i] = (char)tolower((unsigned char)sign[i]);
	body = pi_body(fields, sign);
	expect_state(&ch, "20210928114755985410", body, POLL_PAID, NULL);
	free(body);
	chan_free(&ch);
}
END_TEST

/* Numbers in the answer are signed as PHP printed them. */
START_TEST(test_payindex_numbers)
{
	static const struct kv fields[] = {
		{ "memberid", "10002" },
		{ "orderid", "\"P-9\"" },
		{ "amount", "100.5" },
		{ "true_amount", "0" },
		{ "transaction_id", "\"T9\"" },
		{ "returncode", "\"00\"" },
		{ "trade_state", "\"SUCCESS\"" },
		{ NULL, NULL },
	};
	struct channel ch;
	struct poll_answer a;
	char *body = pi_signed(fields, PAYINDEX_KEY);

	payindex_chan(&ch);
	ck_assert_int_eq(parse(&ch, "P-9", body, &a), POLL_PAID);
	ck_assert_str_eq(a.ev.amount, "100.5");
	ck_assert_int_eq(a.ev.amount_fen, 10050);
	/* true_amount "0" is not sent (PHP empty()): paid = amount */
	ck_assert_str_eq(a.ev.paid_amount, "100.5");
	ck_assert_int_eq(a.ev.paid_amount_fen, 10050);
	ck_assert_str_eq(params_value(&a.raw, "memberid"), "10002");
	poll_answer_free(&a);
	free(body);
	chan_free(&ch);
}
END_TEST

static void
pi_expect(const struct channel *ch, const char *out, const struct kv *base, const char *name,
    const char *lit, enum poll_state want, const char *detail_has)
{
	struct kv fields[16];
	size_t n;
	bool set = false;
	char *body;

	memset(fields, 0, sizeof(fields));

	for (n = 0; base[n].k != NULL; n++) {
		fields[n] = base[n];
		if (name != NULL && strcmp(base[n].k, name) == 0) {
			fields[n].lit = lit;
			set = true;
		}
	}
	if (name != NULL && !set)
		fields[n++] = (struct kv){ name, lit };
	fields[n] = (struct kv){ NULL, NULL };
	/* lit NULL drops the field. */
	for (n = 0; fields[n].k != NULL; n++)
		if (fields[n].lit == NULL) {
			memmove(&fields[n], &fields[n + 1], sizeof(fields[0]) * (16 - n - 1));
			n--;
		}
	body = pi_signed(fields, ch->key);
	expect_state(ch, out, body, want, detail_has);
	free(body);
}

START_TEST(test_payindex_states)
{
	static const char out[] = "20210928114755985410";
	struct channel ch;

	payindex_chan(&ch);
	pi_expect(&ch, out, pi_paid, "trade_state", "\"NOTPAY\"", POLL_UNPAID, NULL);
	pi_expect(&ch, out, pi_paid, "trade_state", "\"CLOSED\"", POLL_OTHER, "CLOSED");
	pi_expect(&ch, out, pi_paid, "trade_state", "\"REFUND\"", POLL_OTHER, "REFUND");
	pi_expect(&ch, out, pi_paid, "trade_state", NULL, POLL_ERROR, "trade_state");
	/* SUCCESS must come with returncode 00 (when there is one). */
	pi_expect(&ch, out, pi_paid, "returncode", "\"11\"", POLL_ERROR, "returncode");
	pi_expect(&ch, out, pi_paid, "returncode", NULL, POLL_PAID, NULL);
	/* What a paid answer cannot lack. */
	pi_expect(&ch, out, pi_paid, "transaction_id", NULL, POLL_ERROR, "transaction_id");
	pi_expect(&ch, out, pi_paid, "transaction_id", "\"\"", POLL_ERROR, "transaction_id");
	pi_expect(&ch, out, pi_paid, "amount", NULL, POLL_ERROR, "amount");
	pi_expect(&ch, out, pi_paid, "amount", "\"1.001\"", POLL_ERROR, "amount");
	pi_expect(&ch, out, pi_paid, "true_amount", "\"abc\"", POLL_ERROR, "amount");
	/* Someone else's order or merchant. */
	pi_expect(&ch, out, pi_paid, "orderid", "\"P-OTHER\"", POLL_ERROR, "P-OTHER");
	pi_expect(&ch, out, pi_paid, "orderid", NULL, POLL_PAID, NULL);
	pi_expect(&ch, out, pi_paid, "memberid", "\"10003\"", POLL_ERROR, "10003");
	chan_free(&ch);
}
END_TEST

START_TEST(test_payindex_errors)
{
	struct channel ch;
	char body[256];

	payindex_chan(&ch);
	expect_state(&ch, "P1", "{\"status\":\"error\",\"msg\":\"不存在的交易订单号\"}",
	    POLL_UNKNOWN, "不存在的交易订单号");
	expect_state(&ch, "P1", "{\"status\":\"error\"}", POLL_UNKNOWN, NULL);
	snprintf(body, sizeof(body), "{\"status\":\"error\",\"msg\":\"key=%s\"}", ch.key);
	expect_state(&ch, "P1", body, POLL_UNKNOWN, "***");
	expect_state(&ch, "P1", "{\"returncode\":\"00\",\"trade_state\":\"SUCCESS\"}", POLL_ERROR,
	    "bad signature");
	expect_state(&ch, "P1", "<html>", POLL_ERROR, "JSON");
	expect_state(&ch, "P1", "[]", POLL_ERROR, "object");
	expect_state(&ch, "P1", "", POLL_ERROR, NULL);
	chan_free(&ch);
}
END_TEST

/* The answer a paid poll keeps outlives the body it was parsed from. */
START_TEST(test_answer_owns_its_strings)
{
	struct channel ch;
	struct poll_answer a;
	char *body = pi_signed(pi_paid, PAYINDEX_KEY);
	char *js;

	payindex_chan(&ch);
	ck_assert_int_eq(parse(&ch, "20210928114755985410", body, &a), POLL_PAID);
	memset(body, 'x', strlen(body));
	free(body);
	js = event_to_json(&a.ev);
	ck_assert_ptr_nonnull(js);
	ck_assert_ptr_nonnull(strstr(js, "\"trade_no\":\"20210928114755985410123\""));
	ck_assert_ptr_nonnull(strstr(js, "\"family\":\"payindex\""));
	ck_assert_ptr_null(strstr(js, "\"sign\""));
	free(js);
	poll_answer_free(&a);
	chan_free(&ch);
}
END_TEST

static Suite *
poll_suite(void)
{
	Suite *s = suite_create("poll");
	TCase *tc;

	tc = tcase_create("shared");
	tcase_add_test(tc, test_reference_signer);
	tcase_add_test(tc, test_form_add);
	tcase_add_test(tc, test_json_text);
	tcase_add_test(tc, test_json_params);
	tcase_add_test(tc, test_state_str_and_free);
	tcase_add_test(tc, test_detail_is_one_masked_line);
	tcase_add_test(tc, test_every_secret_masked);
	suite_add_tcase(s, tc);

	tc = tcase_create("queries");
	tcase_add_test(tc, test_epay_query);
	tcase_add_test(tc, test_epay_sweep_query);
	tcase_add_test(tc, test_gatepay_query);
	tcase_add_test(tc, test_payindex_query);
	suite_add_tcase(s, tc);

	tc = tcase_create("epay");
	tcase_add_test(tc, test_epay_paid);
	tcase_add_test(tc, test_epay_ids_match_callbacks);
	tcase_add_test(tc, test_epay_states);
	tcase_add_test(tc, test_epay_garbage);
	tcase_add_test(tc, test_epay_json_money);
	tcase_add_test(tc, test_epay_out_trade_no_copied);
	tcase_add_test(tc, test_epay_detail_hides_key);
	suite_add_tcase(s, tc);

	tc = tcase_create("sweep");
	tcase_add_test(tc, test_sweep_mixed);
	tcase_add_test(tc, test_sweep_full_page);
	tcase_add_test(tc, test_sweep_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("gatepay");
	tcase_add_test(tc, test_gatepay_paid_ids_match_callbacks);
	tcase_add_test(tc, test_gatepay_states);
	tcase_add_test(tc, test_gatepay_detail_hides_key);
	suite_add_tcase(s, tc);

	tc = tcase_create("payindex");
	tcase_add_test(tc, test_payindex_paid);
	tcase_add_test(tc, test_payindex_ids_match_callbacks);
	tcase_add_test(tc, test_payindex_signature);
	tcase_add_test(tc, test_payindex_numbers);
	tcase_add_test(tc, test_payindex_states);
	tcase_add_test(tc, test_payindex_errors);
	tcase_add_test(tc, test_answer_owns_its_strings);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(poll_suite());
}
