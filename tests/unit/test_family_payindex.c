/* payindex (SPEC §2.3): its row of the table, and every vector of
 * payindex.json verifies and yields the right event; every way of getting a
 * callback wrong is refused with the right verdict. Callbacks the vectors do
 * not cover are signed by the reference signer below, written from the SPEC
 * (checked against the vectors first). Then its poll query and every
 * kind of signed answer (docs/reconciliation.md): a paid order found by a
 * poll gets the event id its callback gets. */
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

/* ---- reference signer, from SPEC §2.3 -------------------------------------- */

static const char *const payindex_exclude[] = { "sign", "attach", NULL };

static void
payindex_md5_sign(const struct params *p, const char *key, char out[33])
{
	size_t len, i;
	char *s = ref_sign_string(p, payindex_exclude, SKIP_EMPTY | SKIP_ZERO, &len);
	char *tail = malloc(strlen(key) + 6);

	ck_assert_ptr_nonnull(tail);
	sprintf(tail, "&key=%s", key);
	md5_concat(s, len, tail, out);
	for (i = 0; out[i] != '\0'; i++)
		out[i] = (char)toupper((unsigned char)out[i]);
	free(tail);
	free(s);
}

static void
payindex_resign(struct params *p, const char *key)
{
	char sign[33];

	payindex_md5_sign(p, key, sign);
	pset(p, "sign", sign);
}

static struct want
payindex_want(const struct params *p)
{
	struct want w = { 0 };
	const char *ta = params_value(p, "true_amount");

	w.trade_no = params_value(p, "transaction_id");
	w.out_trade_no = params_value(p, "orderid");
	w.raw_status = params_value(p, "returncode");
	w.paid = strcmp(w.raw_status, "00") == 0;
	w.amount = params_value(p, "amount");
	/* PHP empty(): "" and "0" count as not sent */
	w.paid_amount = (ta != NULL && *ta != '\0' && strcmp(ta, "0") != 0) ? ta : w.amount;
	w.passthrough = params_value(p, "attach");
	w.passthrough_param = "attach";
	return w;
}

/* ---- its row of the table ---------------------------------------------- */

extern const struct family family_payindex; /* src/family/family_payindex.c */

START_TEST(test_payindex_row)
{
	ck_assert_ptr_eq(family_find("payindex"), &family_payindex);
	ck_assert_str_eq(family_payindex.name, "payindex");
	ck_assert_str_eq(family_payindex.ack_body, "OK");
	/* the gateway client's bits apart (SPEC §10) */
	ck_assert_uint_eq(family_payindex.caps &
		~(unsigned)(FAMILY_CREATE | FAMILY_REFUND | FAMILY_RETURN),
	    0);
	/* the payer's return (SPEC §10.2) */
	ck_assert(family_payindex.caps & FAMILY_RETURN);
	ck_assert(family_returns(&family_payindex));
	ck_assert_str_eq(family_payindex.return_order_field, "orderid");
	ck_assert(family_payindex.verify_return == family_payindex.verify); /* as its notify */
	/* payment creation (SPEC §10.1) */
	ck_assert(family_payindex.caps & FAMILY_CREATE);
	ck_assert(family_payindex.create_request != NULL && family_payindex.create_parse != NULL);
	ck_assert_str_eq(family_payindex.trade_id_field, "transaction_id");
	ck_assert(family_payindex.verify != NULL);
	ck_assert(family_sweeps(&family_payindex) == false);
}
END_TEST

/* ---- signing strings -------------------------------------------------- */

START_TEST(test_sign_string_payindex_vectors)
{
	json_t *root = vectors_load("payindex.json"), *v;
	size_t i;

	json_array_foreach(vectors_array(root, "vectors"), i, v)
	{
		const char *desc = vectors_str(v, "description");
		const char *key = vectors_str(v, "key");
		const char *want = vectors_str(v, "string_to_sign");
		struct params p;
		struct sbuf b;
		char ref[33];

		params_from(&p, json_object_get(v, "params"), NULL);
		sbuf_init(&b);
		ck_assert_int_eq(family_sign_string(&p, payindex_exclude, SKIP_EMPTY | SKIP_ZERO,
				     &b),
		    0);
		ck_assert_int_eq(sbuf_printf(&b, "&key=%s", key), 0);
		ck_assert_msg(strcmp(b.p, want) == 0, "%s: sign string\n  %s\nwant\n  %s", desc,
		    b.p, want);
		payindex_md5_sign(&p, key, ref);
		ck_assert_str_eq(ref, vectors_str(v, "sign"));
		sbuf_free(&b);
		params_free(&p);
	}
	json_decref(root);
}
END_TEST

/* ---- payindex ----------------------------------------------------------- */

START_TEST(test_payindex_vectors)
{
	json_t *root = vectors_load("payindex.json"), *v;
	size_t i;

	json_array_foreach(vectors_array(root, "vectors"), i, v)
	{
		const char *desc = vectors_str(v, "description");
		json_t *params = json_object_get(v, "params");
		struct channel ch;
		struct params p;
		struct event ev;
		struct want w;
		enum verdict got;

		chan_init(&ch, "shop-payindex", "payindex", SIGN_MD5,
		    vectors_str(params, "memberid"), vectors_str(v, "key"));
		params_from(&p, params, NULL);
		got = run(&ch, &p, time(NULL), &ev);
		ck_assert_msg(got == VERDICT_OK, "%s: verdict %s", desc, verdict_str(got));
		w = payindex_want(&p);
		check_event(desc, &ch, &ev, &w);
		params_free(&p);
		chan_free(&ch);
	}
	json_decref(root);
}
END_TEST

struct pi_case {
	json_t *root, *vec;
	const char *key;
	struct channel ch;
	struct params p;
};

static void
pi_case_init(struct pi_case *c, size_t idx, const char *drop)
{
	json_t *params;

	c->root = vectors_load("payindex.json");
	c->vec = json_array_get(vectors_array(c->root, "vectors"), idx);
	ck_assert_ptr_nonnull(c->vec);
	params = json_object_get(c->vec, "params");
	c->key = vectors_str(c->vec, "key");
	chan_init(&c->ch, "shop-payindex", "payindex", SIGN_MD5, vectors_str(params, "memberid"),
	    c->key);
	params_from(&c->p, params, drop);
}

static void
pi_case_free(struct pi_case *c)
{
	params_free(&c->p);
	chan_free(&c->ch);
	json_decref(c->root);
}

START_TEST(test_payindex_sign_altered)
{
	struct pi_case c;
	char sign[33];

	pi_case_init(&c, 0, NULL);
	snprintf(sign, sizeof(sign), "%s", params_value(&c.p, "sign"));
	flip_hex_digit(sign, 3);
	pset(&c.p, "sign", sign);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "sign digit changed");
	pi_case_free(&c);

	pi_case_init(&c, 0, NULL);
	pset(&c.p, "amount", "1000.00");
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "amount altered");
	pi_case_free(&c);

	pi_case_init(&c, 0, NULL);
	pset(&c.p, "returncode", "11");
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "returncode altered");
	pi_case_free(&c);

	pi_case_init(&c, 0, NULL);
	pset(&c.p, "bankcode", "ALIPAY");
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "unsigned extra field added");
	pi_case_free(&c);

	pi_case_init(&c, 0, NULL);
	chan_set(&c.ch.key, "t4ig5acnpx4fet4zapshjacjd9o4bhbj");
	c.ch.key_len = strlen(c.ch.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "key differs");
	pi_case_free(&c);
}
END_TEST

START_TEST(test_payindex_unsigned_fields)
{
	struct pi_case c;
	struct event ev;
	enum verdict got;

	/* attach is not signed */
	pi_case_init(&c, 0, NULL);
	pset(&c.p, "attach", "changed on the way");
	got = run(&c.ch, &c.p, time(NULL), &ev);
	ck_assert_msg(got == VERDICT_OK, "attach changed: %s", verdict_str(got));
	ck_assert_str_eq(ev.passthrough, "changed on the way");
	pi_case_free(&c);

	/* nor is a field that is "0" or "" (PHP empty()) */
	pi_case_init(&c, 0, NULL);
	pset(&c.p, "extra_zero", "0");
	pset(&c.p, "extra_empty", "");
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "extra \"0\" and \"\" fields");
	pi_case_free(&c);

	/* an extra field, re-signed */
	pi_case_init(&c, 0, NULL);
	pset(&c.p, "bankcode", "ALIPAY");
	payindex_resign(&c.p, c.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "extra field, re-signed");
	pi_case_free(&c);
}
END_TEST

START_TEST(test_payindex_wrong_merchant)
{
	struct pi_case c;

	pi_case_init(&c, 0, NULL);
	chan_set(&c.ch.merchant_id, "10003");
	expect(&c.ch, &c.p, time(NULL), VERDICT_WRONG_MERCHANT, "channel merchant_id differs");
	pi_case_free(&c);

	pi_case_init(&c, 0, NULL);
	pset(&c.p, "memberid", "10003");
	payindex_resign(&c.p, c.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_WRONG_MERCHANT, "memberid differs, re-signed");
	pi_case_free(&c);
}
END_TEST

START_TEST(test_payindex_missing)
{
	static const char *const required[] = { "transaction_id", "orderid", "returncode" };
	struct pi_case c;
	size_t i;

	pi_case_init(&c, 0, "sign");
	expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, "no sign");
	pi_case_free(&c);

	pi_case_init(&c, 0, NULL);
	pset(&c.p, "sign", "");
	expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, "empty sign");
	pi_case_free(&c);

	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		char what[64];

		snprintf(what, sizeof(what), "no %s, re-signed", required[i]);
		pi_case_init(&c, 0, required[i]);
		payindex_resign(&c.p, c.key);
		expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, what);
		pi_case_free(&c);
	}
}
END_TEST

START_TEST(test_payindex_bad_amount)
{
	struct pi_case c;

	pi_case_init(&c, 0, NULL);
	pset(&c.p, "amount", "1.001");
	payindex_resign(&c.p, c.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_AMOUNT, "amount 1.001, re-signed");
	pi_case_free(&c);

	pi_case_init(&c, 0, NULL);
	pset(&c.p, "true_amount", "99.999");
	payindex_resign(&c.p, c.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_AMOUNT, "true_amount 99.999, re-signed");
	pi_case_free(&c);

	pi_case_init(&c, 0, NULL);
	pset(&c.p, "amount", "1e2");
	payindex_resign(&c.p, c.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_AMOUNT, "amount 1e2, re-signed");
	pi_case_free(&c);
}
END_TEST

START_TEST(test_payindex_other_returncodes)
{
	static const char *const codes[] = { "01", "000", "SUCCESS", "11" };
	size_t i;

	/* paid iff returncode is exactly "00" */
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct pi_case c;
		struct event ev;
		enum verdict got;

		pi_case_init(&c, 0, NULL);
		pset(&c.p, "returncode", codes[i]);
		payindex_resign(&c.p, c.key);
		got = run(&c.ch, &c.p, time(NULL), &ev);
		ck_assert_msg(got == VERDICT_OK, "returncode %s: %s", codes[i], verdict_str(got));
		ck_assert_msg(ev.type == EVENT_STATUS, "returncode \"%s\": type %s", codes[i],
		    event_type_str(ev.type));
		ck_assert_str_eq(ev.status, codes[i]);
		pi_case_free(&c);
	}
}
END_TEST

START_TEST(test_payindex_lowercase_sign_is_resigned_ok)
{
	struct pi_case c;
	char sign[33];
	size_t i;

	/* the reference signer (upper-case hex) is accepted, and so is its lower case */
	pi_case_init(&c, 1, NULL);
	pset(&c.p, "true_amount", "49.9");
	payindex_resign(&c.p, c.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "re-signed");
	snprintf(sign, sizeof(sign), "%s", params_value(&c.p, "sign"));
	for (i = 0; sign[i] != '\0'; i++)
		sign[i] = (char)tolower((unsigned char)sign[i]);
	pset(&c.p, "sign", sign);
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "re-signed, lower-case hex");
	pi_case_free(&c);
}
END_TEST

/* ---- polls: the query and every kind of answer ---------------------------- */

#define PAYINDEX_KEY "t4ig5acnpx4fet4zapshjacjd9o4bhbi"

static void
payindex_chan(struct channel *ch)
{
	poll_chan_init(ch, "shop-payindex", "payindex", "10002", PAYINDEX_KEY);
}

/* ---- reference signer of query answers, from SPEC §2.3 ------------------- */

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

START_TEST(test_answer_reference_signer)
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

START_TEST(test_payindex_query)
{
	json_t *root = vectors_load("payindex.json");
	json_t *vec = json_object_get(root, "trade_query");
	json_t *params = json_object_get(vec, "params");
	struct channel ch;
	struct poll_query q;
	char want[512];

	ck_assert_msg(json_is_object(params), "payindex.json has no trade_query params");
	poll_chan_init(&ch, "shop-payindex", "payindex", vectors_str(params, "pay_memberid"),
	    vectors_str(vec, "key"));
	ck_assert_int_eq(ch.family->poll_query(&ch, vectors_str(params, "pay_orderid"), &q), 0);
	ck_assert_str_eq(q.method, "POST");
	ck_assert_str_eq(q.url, POLL_API "/Pay_Trade_query.html");
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
		poll_chan_init(&ch, "shop-payindex", "payindex", vectors_str(p, "memberid"),
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

/* ---- creating a payment (SPEC §10.1) ------------------------------------ */

START_TEST(test_payindex_create_request)
{
	static const char *const signed_fields[] = { "pay_memberid", "pay_orderid", "pay_applydate",
		"pay_bankcode", "pay_notifyurl", "pay_callbackurl", "pay_amount", NULL };
	static const char *const none[] = { NULL };
	struct channel ch;
	struct pay_request pr;
	struct poll_query q;
	struct params p, s7;
	const char *why;
	char want[33], *str;
	size_t i, n;

	chan_init(&ch, "shop", "payindex", SIGN_MD5, "10002", "PayK3yPayK3y");
	chan_set(&ch.api_base, "https://gw.example");
	pay_request_init(&pr, "ORD-P", "100.00");
	pr.method = "903";
	pr.subject = "商品 & 服务=好";
	pr.param = "a=1&b=2";
	ck_assert_int_eq(family_payindex.create_request(&ch, &pr, &q, &why), 0);
	ck_assert_str_eq(q.method, "POST");
	ck_assert_str_eq(q.url, "https://gw.example/Pay_Index.html");
	form_params(&p, q.body);
	ck_assert_str_eq(params_value(&p, "pay_memberid"), "10002");
	ck_assert_str_eq(params_value(&p, "pay_orderid"), "ORD-P");
	/* 1700000000 is 2023-11-14 22:13:20 UTC: Beijing time is UTC+8 */
	ck_assert_str_eq(params_value(&p, "pay_applydate"), "2023-11-15 06:13:20");
	ck_assert_str_eq(params_value(&p, "pay_bankcode"), "903");
	ck_assert_str_eq(params_value(&p, "pay_notifyurl"), "https://relay.example/notify/shop");
	ck_assert_str_eq(params_value(&p, "pay_callbackurl"), "https://relay.example/return/shop");
	ck_assert_str_eq(params_value(&p, "pay_amount"), "100.00");
	ck_assert_str_eq(params_value(&p, "pay_productname"), "商品 & 服务=好");
	ck_assert_str_eq(params_value(&p, "pay_attach"), "a=1&b=2");
	ck_assert_str_eq(params_value(&p, "type"), "json");
	/* the seven signed fields, sorted, "&key=KEY", UPPERCASE md5 */
	params_init(&s7);
	for (i = 0; signed_fields[i] != NULL; i++)
		pset(&s7, signed_fields[i], params_value(&p, signed_fields[i]));
	str = ref_sign_string(&s7, none, SKIP_EMPTY | SKIP_ZERO, &n);
	{
		char buf[2048];

		snprintf(buf, sizeof(buf), "%s&key=", str);
		md5_concat(buf, strlen(buf), "PayK3yPayK3y", want);
	}
	free(str);
	for (i = 0; want[i] != '\0'; i++)
		want[i] = (char)toupper((unsigned char)want[i]);
	ck_assert_str_eq(params_value(&p, "pay_md5sign"), want);
	ck_assert(strstr(q.body, "PayK3y") == NULL);
	params_free(&s7);
	params_free(&p);
	poll_query_free(&q);
	/* no subject: the order id; no param: no pay_attach */
	pr.subject = pr.param = NULL;
	ck_assert_int_eq(family_payindex.create_request(&ch, &pr, &q, &why), 0);
	form_params(&p, q.body);
	ck_assert_str_eq(params_value(&p, "pay_productname"), "ORD-P");
	ck_assert_ptr_null(params_value(&p, "pay_attach"));
	params_free(&p);
	poll_query_free(&q);
	pr.method = NULL;
	ck_assert_int_eq(family_payindex.create_request(&ch, &pr, &q, &why), -1);
	ck_assert_ptr_nonnull(why);
	chan_free(&ch);
}
END_TEST

static void
payindex_parse(const char *body, struct pay_result *r)
{
	struct channel ch;

	chan_init(&ch, "shop", "payindex", SIGN_MD5, "10002", "PayK3yPayK3y");
	memset(r, 0, sizeof(*r));
	family_payindex.create_parse(&ch, body, strlen(body), r);
	chan_free(&ch);
}

START_TEST(test_payindex_create_parse)
{
	struct pay_result r;

	payindex_parse("{\"status\":\"1\",\"msg\":\"下单成功\",\"pay_amount\":\"100\","
		       "\"pay_orderid\":\"20210928114755985410\",\"payUrl\":\"http://x.cc/"
		       "c?osn=1\"}",
	    &r);
	ck_assert(r.ok);
	ck_assert_str_eq(r.url, "http://x.cc/c?osn=1");
	ck_assert_ptr_null(r.trade_no);
	pay_result_free(&r);
	/* the document's own example spells it "ststus" */
	payindex_parse("{\"ststus\":\"1\",\"msg\":\"下单成功\",\"pay_amount\":\"100\","
		       "\"pay_orderid\":\"20210928114755985410\",\"payUrl\":\"http://x.cc/"
		       "c?osn=2\"}",
	    &r);
	ck_assert(r.ok);
	ck_assert_str_eq(r.url, "http://x.cc/c?osn=2");
	pay_result_free(&r);
	payindex_parse("{\"status\":\"error\",\"msg\":\"错误原因\",\"data\":[]}", &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.code, "error");
	ck_assert_str_eq(r.msg, "错误原因");
	pay_result_free(&r);
	payindex_parse("{\"status\":1,\"msg\":\"ok\"}", &r);
	ck_assert(!r.ok); /* no payUrl */
	pay_result_free(&r);
	payindex_parse("<html>cashier</html>", &r);
	ck_assert(!r.ok);
	pay_result_free(&r);
}
END_TEST

/* The key echoed across the cut of msg is masked before the cut (found by
 * fuzz/fuzz_client.c). */
START_TEST(test_payindex_create_parse_masks_before_cut)
{
	char body[600], filler[250];
	struct pay_result r;

	memset(filler, 'x', sizeof(filler) - 1);
	filler[sizeof(filler) - 1] = '\0';
	snprintf(body, sizeof(body), "{\"status\":\"error\",\"msg\":\"%sPayK3yPayK3y\"}", filler);
	payindex_parse(body, &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.code, "error");
	ck_assert_ptr_null(strstr(r.msg, "PayK"));
	ck_assert_ptr_nonnull(strstr(r.msg, "***"));
	pay_result_free(&r);
}
END_TEST

static Suite *
family_payindex_suite(void)
{
	Suite *s = suite_create("family_payindex");
	TCase *tc;

	tc = tcase_create("payindex");
	tcase_add_test(tc, test_payindex_row);
	tcase_add_test(tc, test_payindex_create_request);
	tcase_add_test(tc, test_payindex_create_parse);
	tcase_add_test(tc, test_payindex_create_parse_masks_before_cut);
	tcase_add_test(tc, test_sign_string_payindex_vectors);
	tcase_add_test(tc, test_payindex_vectors);
	tcase_add_test(tc, test_payindex_sign_altered);
	tcase_add_test(tc, test_payindex_unsigned_fields);
	tcase_add_test(tc, test_payindex_wrong_merchant);
	tcase_add_test(tc, test_payindex_missing);
	tcase_add_test(tc, test_payindex_bad_amount);
	tcase_add_test(tc, test_payindex_other_returncodes);
	tcase_add_test(tc, test_payindex_lowercase_sign_is_resigned_ok);
	suite_add_tcase(s, tc);

	tc = tcase_create("poll");
	tcase_add_test(tc, test_answer_reference_signer);
	tcase_add_test(tc, test_payindex_query);
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
	return run_suite(family_payindex_suite());
}
