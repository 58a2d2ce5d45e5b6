/* epay (SPEC §2.1): its row of the table, and every vector of epay.json and
 * epay_rsa.json verifies and yields the right event; every way of getting a
 * callback wrong is refused with the right verdict. Callbacks the vectors do
 * not cover are signed by the reference signer below, written from the SPEC
 * (checked against the vectors first). Then its poll query, every kind of
 * answer, and the sweep (docs/reconciliation.md): a paid order found by a
 * poll or a sweep gets the event id its callback gets. */
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

/* ---- reference signer, from SPEC §2.1 -------------------------------------- */

static const char *const epay_exclude[] = { "sign", "sign_type", NULL };

/* The epay MD5 sign of `p` with `key`. */
static void
epay_md5_sign(const struct params *p, const char *key, char out[33])
{
	size_t len;
	char *s = ref_sign_string(p, epay_exclude, SKIP_EMPTY, &len);

	md5_concat(s, len, key, out);
	free(s);
}

static void
epay_resign(struct params *p, const char *key)
{
	char sign[33];

	epay_md5_sign(p, key, sign);
	pset(p, "sign", sign);
}

static EVP_PKEY *
load_private_key(const json_t *root)
{
	const char *pem = vectors_str(root, "platform_private_key_pem_for_tests_only");
	BIO *bio = BIO_new_mem_buf(pem, (int)strlen(pem));
	EVP_PKEY *k;

	ck_assert_ptr_nonnull(bio);
	k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ck_assert_msg(k != NULL, "cannot load the test-only private key");
	return k;
}

/* base64 SHA256withRSA (PKCS#1 v1.5) of data; the caller frees it. */
static char *
rsa_sign_b64(EVP_PKEY *k, const char *data, size_t len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig;
	size_t siglen = 0;
	char *b64;

	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
	ck_assert_int_eq(EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)data, len), 1);
	sig = malloc(siglen);
	ck_assert_ptr_nonnull(sig);
	ck_assert_int_eq(EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)data, len), 1);
	b64 = crypto_base64_encode(sig, siglen);
	ck_assert_ptr_nonnull(b64);
	free(sig);
	EVP_MD_CTX_free(ctx);
	return b64;
}

static char *
epay_rsa_sign(const struct params *p, EVP_PKEY *k)
{
	size_t len;
	char *s = ref_sign_string(p, epay_exclude, SKIP_EMPTY | SKIP_BLANK, &len);
	char *b64 = rsa_sign_b64(k, s, len);

	free(s);
	return b64;
}

static void
rsa_resign(struct params *p, EVP_PKEY *k)
{
	char *b64 = epay_rsa_sign(p, k);

	pset(p, "sign", b64);
	free(b64);
}

static struct want
epay_want(const struct params *p)
{
	struct want w = { 0 };

	w.trade_no = params_value(p, "trade_no");
	w.out_trade_no = params_value(p, "out_trade_no");
	w.raw_status = params_value(p, "trade_status");
	w.paid = strcmp(w.raw_status, "TRADE_SUCCESS") == 0;
	w.amount = w.paid_amount = params_value(p, "money");
	w.method = params_value(p, "type");
	w.subject = params_value(p, "name");
	w.passthrough = params_value(p, "param");
	w.passthrough_param = "param";
	return w;
}

/* ---- its row of the table ---------------------------------------------- */

extern const struct family family_epay; /* src/family/family_epay.c */

START_TEST(test_epay_row)
{
	ck_assert_ptr_eq(family_find("epay"), &family_epay);
	ck_assert_str_eq(family_epay.name, "epay");
	ck_assert_str_eq(family_epay.ack_body, "success");
	ck_assert_uint_eq(family_epay.caps & (FAMILY_REFUND | FAMILY_RETURN),
	    FAMILY_REFUND | FAMILY_RETURN);
	/* the gateway client's bits apart (SPEC §10) */
	ck_assert_uint_eq(family_epay.caps &
		~(unsigned)(FAMILY_CREATE | FAMILY_REFUND | FAMILY_RETURN),
	    FAMILY_RSA);
	/* the payer's return (SPEC §10.2) */
	ck_assert(family_epay.caps & FAMILY_RETURN);
	ck_assert(family_returns(&family_epay));
	ck_assert_str_eq(family_epay.return_order_field, "out_trade_no");
	ck_assert(family_epay.verify_return == family_epay.verify); /* as its notify */
	/* payment creation (SPEC §10.1) */
	ck_assert(family_epay.caps & FAMILY_CREATE);
	ck_assert(family_epay.create_request != NULL && family_epay.create_parse != NULL &&
	    family_epay.create_redirect != NULL);
	ck_assert_str_eq(family_epay.trade_id_field, "trade_no");
	ck_assert(family_epay.verify != NULL);
	ck_assert(family_sweeps(&family_epay) == true);
}
END_TEST

/* ---- signing strings -------------------------------------------------- */

START_TEST(test_sign_string_epay_vectors)
{
	json_t *root = vectors_load("epay.json"), *v;
	size_t i;

	json_array_foreach(vectors_array(root, "vectors"), i, v)
	{
		const char *desc = vectors_str(v, "description");
		const char *key = vectors_str(v, "key");
		const char *want = vectors_str(v, "string_to_sign");
		struct params p;
		struct sbuf b;
		char md5[33], ref[33];

		params_from(&p, json_object_get(v, "params"), NULL);
		sbuf_init(&b);
		ck_assert_int_eq(family_sign_string(&p, epay_exclude, SKIP_EMPTY, &b), 0);
		ck_assert_int_eq(sbuf_adds(&b, key), 0);
		ck_assert_msg(strcmp(b.p, want) == 0, "%s: sign string\n  %s\nwant\n  %s", desc,
		    b.p, want);
		ck_assert_int_eq(crypto_md5_hex(b.p, b.len, md5), 0);
		ck_assert_str_eq(md5, vectors_str(v, "sign"));
		/* the reference signer the negative cases use agrees */
		epay_md5_sign(&p, key, ref);
		ck_assert_str_eq(ref, vectors_str(v, "sign"));
		sbuf_free(&b);
		params_free(&p);
	}
	json_decref(root);
}
END_TEST

START_TEST(test_sign_string_epay_rsa_vectors)
{
	json_t *root = vectors_load("epay_rsa.json"), *v;
	size_t i;

	json_array_foreach(vectors_array(root, "vectors"), i, v)
	{
		struct params p;

		params_from(&p, json_object_get(v, "params"), NULL);
		assert_sign_string(&p, epay_exclude, SKIP_EMPTY | SKIP_BLANK,
		    vectors_str(v, "string_to_sign"));
		params_free(&p);
	}
	json_decref(root);
}
END_TEST

/* ---- epay MD5 ----------------------------------------------------------- */

START_TEST(test_epay_vectors)
{
	json_t *root = vectors_load("epay.json"), *v;
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

		chan_init(&ch, "shop-epay", "epay", SIGN_MD5, vectors_str(params, "pid"),
		    vectors_str(v, "key"));
		params_from(&p, params, NULL);
		got = run(&ch, &p, time(NULL), &ev);
		ck_assert_msg(got == VERDICT_OK, "%s: verdict %s", desc, verdict_str(got));
		w = epay_want(&p);
		check_event(desc, &ch, &ev, &w);
		params_free(&p);
		chan_free(&ch);
	}
	json_decref(root);
}
END_TEST

/* The first epay vector, with its channel. */
struct epay_case {
	json_t *root, *vec, *params;
	const char *key;
	struct channel ch;
	struct params p;
};

static void
epay_case_init(struct epay_case *c, const char *drop)
{
	c->root = vectors_load("epay.json");
	c->vec = json_array_get(vectors_array(c->root, "vectors"), 0);
	c->params = json_object_get(c->vec, "params");
	c->key = vectors_str(c->vec, "key");
	chan_init(&c->ch, "shop-epay", "epay", SIGN_MD5, vectors_str(c->params, "pid"), c->key);
	params_from(&c->p, c->params, drop);
}

static void
epay_case_free(struct epay_case *c)
{
	params_free(&c->p);
	chan_free(&c->ch);
	json_decref(c->root);
}

START_TEST(test_epay_sign_altered)
{
	struct epay_case c;
	char sign[33];

	epay_case_init(&c, NULL);
	snprintf(sign, sizeof(sign), "%s", params_value(&c.p, "sign"));
	flip_hex_digit(sign, 0);
	pset(&c.p, "sign", sign);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "first sign digit changed");
	flip_hex_digit(sign, 0);
	flip_hex_digit(sign, 31);
	pset(&c.p, "sign", sign);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "last sign digit changed");
	sign[31] = '\0';
	pset(&c.p, "sign", sign);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "sign one digit short");
	pset(&c.p, "sign", "not hex at all, not hex at all!!");
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "sign not hex");
	epay_case_free(&c);
}
END_TEST

START_TEST(test_epay_sign_uppercase)
{
	struct epay_case c;
	char sign[33];
	size_t i;

	epay_case_init(&c, NULL);
	snprintf(sign, sizeof(sign), "%s", params_value(&c.p, "sign"));
	for (i = 0; sign[i] != '\0'; i++)
		sign[i] = (char)toupper((unsigned char)sign[i]);
	pset(&c.p, "sign", sign);
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "sign in upper case");
	epay_case_free(&c);
}
END_TEST

START_TEST(test_epay_signed_field_altered)
{
	struct epay_case c;

	epay_case_init(&c, NULL);
	pset(&c.p, "money", "100.00");
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "money altered");
	epay_case_free(&c);

	epay_case_init(&c, NULL);
	pset(&c.p, "trade_status", "TRADE_FINISHED");
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "trade_status altered");
	epay_case_free(&c);

	/* an extra field is signed too */
	epay_case_init(&c, NULL);
	pset(&c.p, "buyer", "x@example.com");
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "unsigned extra field added");
	epay_case_free(&c);

	/* ... but an empty one is not */
	epay_case_init(&c, NULL);
	pset(&c.p, "buyer", "");
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "empty extra field added");
	epay_case_free(&c);
}
END_TEST

START_TEST(test_epay_extra_field_resigned)
{
	struct epay_case c;

	epay_case_init(&c, NULL);
	pset(&c.p, "endtime", "2026-11-22 10:00:05");
	pset(&c.p, "param", "uid=42&x=a b+c");
	epay_resign(&c.p, c.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "re-signed with extra fields");
	epay_case_free(&c);
}
END_TEST

START_TEST(test_epay_wrong_key)
{
	struct epay_case c;

	epay_case_init(&c, NULL);
	chan_set(&c.ch.key, "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8j");
	c.ch.key_len = strlen(c.ch.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "channel key differs");
	epay_case_free(&c);
}
END_TEST

START_TEST(test_epay_wrong_merchant)
{
	struct epay_case c;

	/* a valid signature, but not for this channel's pid */
	epay_case_init(&c, NULL);
	chan_set(&c.ch.merchant_id, "1002");
	expect(&c.ch, &c.p, time(NULL), VERDICT_WRONG_MERCHANT, "channel merchant_id differs");
	epay_case_free(&c);

	epay_case_init(&c, NULL);
	pset(&c.p, "pid", "1002");
	epay_resign(&c.p, c.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_WRONG_MERCHANT, "pid differs, re-signed");
	epay_case_free(&c);
}
END_TEST

START_TEST(test_epay_missing_sign)
{
	struct epay_case c;

	epay_case_init(&c, "sign");
	expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, "no sign");
	epay_case_free(&c);

	epay_case_init(&c, NULL);
	pset(&c.p, "sign", "");
	expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, "empty sign");
	epay_case_free(&c);
}
END_TEST

START_TEST(test_epay_missing_fields)
{
	static const char *const required[] = { "trade_no", "out_trade_no", "trade_status" };
	size_t i;

	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		struct epay_case c;
		char what[64];

		snprintf(what, sizeof(what), "no %s, re-signed", required[i]);
		epay_case_init(&c, required[i]);
		epay_resign(&c.p, c.key);
		expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, what);
		epay_case_free(&c);

		snprintf(what, sizeof(what), "empty %s, re-signed", required[i]);
		epay_case_init(&c, NULL);
		pset(&c.p, required[i], "");
		epay_resign(&c.p, c.key);
		expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, what);
		epay_case_free(&c);
	}
}
END_TEST

START_TEST(test_epay_sign_type)
{
	struct epay_case c;

	epay_case_init(&c, NULL);
	pset(&c.p, "sign_type", "RSA");
	expect(&c.ch, &c.p, time(NULL), VERDICT_SIGN_TYPE, "sign_type=RSA on an MD5 channel");
	epay_case_free(&c);

	epay_case_init(&c, NULL);
	pset(&c.p, "sign_type", "SHA256");
	expect(&c.ch, &c.p, time(NULL), VERDICT_SIGN_TYPE, "sign_type=SHA256 on an MD5 channel");
	epay_case_free(&c);

	/* absent: the channel's type applies */
	epay_case_init(&c, "sign_type");
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "no sign_type on an MD5 channel");
	epay_case_free(&c);
}
END_TEST

START_TEST(test_epay_bad_amount)
{
	static const char *const bad[] = { "1.001", "-1", "1e2", ".5", "1,00", "abc" };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct epay_case c;
		char what[64];

		snprintf(what, sizeof(what), "money \"%s\", re-signed", bad[i]);
		epay_case_init(&c, NULL);
		pset(&c.p, "money", bad[i]);
		epay_resign(&c.p, c.key);
		expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_AMOUNT, what);
		epay_case_free(&c);
	}
}
END_TEST

START_TEST(test_epay_php_float_money)
{
	static const char *const ok[] = { "0.5", "100.1", "1", "1.0" };
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct epay_case c;
		struct event ev;
		enum verdict got;

		epay_case_init(&c, NULL);
		pset(&c.p, "money", ok[i]);
		epay_resign(&c.p, c.key);
		got = run(&c.ch, &c.p, time(NULL), &ev);
		ck_assert_msg(got == VERDICT_OK, "money %s: %s", ok[i], verdict_str(got));
		ck_assert_int_eq(ev.amount_fen, ref_fen(ok[i]));
		ck_assert_int_eq(ev.paid_amount_fen, ref_fen(ok[i]));
		ck_assert_str_eq(ev.amount, ok[i]);
		epay_case_free(&c);
	}
}
END_TEST

START_TEST(test_epay_other_statuses)
{
	static const char *const statuses[] = { "TRADE_FINISHED", "WAIT_BUYER_PAY", "trade_success",
		"TRADE_SUCCESS:" };
	static const char *const not_canonical[] = { "TRADE_SUCCESS ", "TRADE_SUCCESS&type=alipay",
		"TRADE_SUCCESS%", "TRADE\tSUCCESS", "支付成功" };
	size_t i;

	/* a status that is not canonical is refused, whatever it says (SPEC 2.5) */
	for (i = 0; i < sizeof(not_canonical) / sizeof(not_canonical[0]); i++) {
		struct epay_case c;
		struct event ev;
		enum verdict got;

		epay_case_init(&c, NULL);
		pset(&c.p, "trade_status", not_canonical[i]);
		epay_resign(&c.p, c.key);
		got = run(&c.ch, &c.p, time(NULL), &ev);
		ck_assert_msg(got == VERDICT_NOT_CANONICAL, "status \"%s\": %s", not_canonical[i],
		    verdict_str(got));
		epay_case_free(&c);
	}

	/* paid iff trade_status is exactly TRADE_SUCCESS */
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		struct epay_case c;
		struct event ev;
		enum verdict got;
		char id[EVENT_ID_LEN + 1];

		epay_case_init(&c, NULL);
		pset(&c.p, "trade_status", statuses[i]);
		epay_resign(&c.p, c.key);
		got = run(&c.ch, &c.p, time(NULL), &ev);
		ck_assert_msg(got == VERDICT_OK, "status %s: %s", statuses[i], verdict_str(got));
		ck_assert_msg(ev.type == EVENT_STATUS, "status \"%s\": type %s", statuses[i],
		    event_type_str(ev.type));
		ck_assert_str_eq(ev.status, statuses[i]);
		event_make_id(id, c.ch.name, params_value(&c.p, "trade_no"), statuses[i]);
		ck_assert_str_eq(ev.id, id);
		epay_case_free(&c);
	}
}
END_TEST

/* ---- epay RSA ----------------------------------------------------------- */

struct rsa_case {
	json_t *root, *vec;
	struct channel ch;
	struct params p;
	EVP_PKEY *priv;
	time_t ts;
};

static void
rsa_case_init(struct rsa_case *c, size_t idx)
{
	const char *pem;

	c->root = vectors_load("epay_rsa.json");
	c->vec = json_array_get(vectors_array(c->root, "vectors"), idx);
	ck_assert_ptr_nonnull(c->vec);
	params_from(&c->p, json_object_get(c->vec, "params"), NULL);
	chan_init(&c->ch, "shop-epay-v2", "epay", SIGN_RSA, params_value(&c->p, "pid"),
	    "merchant-key-for-the-query-api-0001");
	pem = vectors_str(c->root, "platform_public_key_pem");
	c->ch.platform_key = crypto_pkey_load_pem(pem, strlen(pem));
	ck_assert_msg(c->ch.platform_key != NULL, "cannot load the platform public key");
	c->priv = load_private_key(c->root);
	c->ts = (time_t)strtoll(params_value(&c->p, "timestamp"), NULL, 10);
	ck_assert_int_gt(c->ts, 0);
}

static void
rsa_case_free(struct rsa_case *c)
{
	params_free(&c->p);
	chan_free(&c->ch);
	EVP_PKEY_free(c->priv);
	json_decref(c->root);
}

START_TEST(test_epay_rsa_vectors)
{
	json_t *root = vectors_load("epay_rsa.json");
	size_t i, n = json_array_size(vectors_array(root, "vectors"));

	for (i = 0; i < n; i++) {
		struct rsa_case c;
		struct event ev;
		struct want w;
		enum verdict got;
		const char *desc;
		char *ref;

		rsa_case_init(&c, i);
		desc = vectors_str(c.vec, "description");
		/* the reference signer reproduces the vector (PKCS#1 v1.5 is deterministic) */
		ref = epay_rsa_sign(&c.p, c.priv);
		ck_assert_msg(strcmp(ref, params_value(&c.p, "sign")) == 0,
		    "%s: test signer disagrees with the vector", desc);
		free(ref);

		got = run(&c.ch, &c.p, c.ts, &ev);
		ck_assert_msg(got == VERDICT_OK, "%s: verdict %s", desc, verdict_str(got));
		w = epay_want(&c.p);
		check_event(desc, &c.ch, &ev, &w);
		rsa_case_free(&c);
	}
	json_decref(root);
}
END_TEST

START_TEST(test_epay_rsa_time_window)
{
	json_t *root = vectors_load("epay_rsa.json");
	json_t *tol = json_object_get(root, "timestamp_tolerance_s");
	size_t i, n = json_array_size(vectors_array(root, "vectors"));

	ck_assert_msg(json_is_integer(tol) && json_integer_value(tol) == 300,
	    "epay_rsa.json: timestamp_tolerance_s is not the SPEC's 300");
	for (i = 0; i < n; i++) {
		struct rsa_case c;

		rsa_case_init(&c, i);
		expect(&c.ch, &c.p, c.ts + 300, VERDICT_OK, "now = timestamp + 300");
		expect(&c.ch, &c.p, c.ts - 300, VERDICT_OK, "now = timestamp - 300");
		expect(&c.ch, &c.p, c.ts + 301, VERDICT_STALE, "now = timestamp + 301");
		expect(&c.ch, &c.p, c.ts - 301, VERDICT_STALE, "now = timestamp - 301");
		expect(&c.ch, &c.p, c.ts + 86400, VERDICT_STALE, "now = timestamp + 1 day");
		rsa_case_free(&c);
	}
	json_decref(root);
}
END_TEST

START_TEST(test_epay_rsa_fresh_signatures)
{
	struct rsa_case c;
	struct event ev;
	enum verdict got;
	char ts[32];
	time_t now = time(NULL);

	/* an extra field and a white-space-only value (left out of the string) */
	rsa_case_init(&c, 0);
	snprintf(ts, sizeof(ts), "%lld", (long long)now);
	pset(&c.p, "timestamp", ts);
	pset(&c.p, "endtime", "2026-11-22 10:00:05");
	pset(&c.p, "param", " \t ");
	pset(&c.p, "out_trade_no", "FRESH-1");
	rsa_resign(&c.p, c.priv);
	got = run(&c.ch, &c.p, now, &ev);
	ck_assert_msg(got == VERDICT_OK, "fresh RSA notification: %s", verdict_str(got));
	ck_assert_str_eq(ev.out_trade_no, "FRESH-1");
	ck_assert_int_eq(ev.type, EVENT_PAID);

	/* the blank value is not signed: changing it to other blanks keeps it valid */
	pset(&c.p, "param", "  ");
	expect(&c.ch, &c.p, now, VERDICT_OK, "other white space in a blank value");

	/* a non-blank param is signed */
	pset(&c.p, "param", " x ");
	expect(&c.ch, &c.p, now, VERDICT_BAD_SIGNATURE, "blank value made non-blank");
	rsa_resign(&c.p, c.priv);
	expect(&c.ch, &c.p, now, VERDICT_OK, "non-blank param, re-signed");

	/* without sign_type in the request, the channel's type applies */
	rsa_case_free(&c);
	rsa_case_init(&c, 0);
	params_free(&c.p);
	params_from(&c.p, json_object_get(c.vec, "params"), "sign_type");
	pset(&c.p, "timestamp", ts);
	rsa_resign(&c.p, c.priv);
	expect(&c.ch, &c.p, now, VERDICT_OK, "RSA channel, no sign_type in the request");
	rsa_case_free(&c);
}
END_TEST

START_TEST(test_epay_rsa_tampered)
{
	struct rsa_case c;
	char *sig;

	rsa_case_init(&c, 0);
	pset(&c.p, "money", "2");
	expect(&c.ch, &c.p, c.ts, VERDICT_BAD_SIGNATURE, "money altered after signing");
	rsa_case_free(&c);

	rsa_case_init(&c, 0);
	pset(&c.p, "buyer", "someone@else");
	expect(&c.ch, &c.p, c.ts, VERDICT_BAD_SIGNATURE, "buyer altered after signing");
	rsa_case_free(&c);

	/* the signature itself, one base64 digit changed */
	rsa_case_init(&c, 0);
	sig = strdup(params_value(&c.p, "sign"));
	ck_assert_ptr_nonnull(sig);
	sig[5] = sig[5] == 'A' ? 'B' : 'A';
	pset(&c.p, "sign", sig);
	expect(&c.ch, &c.p, c.ts, VERDICT_BAD_SIGNATURE, "sign digit changed");
	pset(&c.p, "sign", "%%% not base64 %%%");
	expect(&c.ch, &c.p, c.ts, VERDICT_BAD_SIGNATURE, "sign not base64");
	free(sig);
	rsa_case_free(&c);

	/* a stale timestamp, re-signed: the signature is fine, the time is not */
	rsa_case_init(&c, 0);
	pset(&c.p, "timestamp", "1794990000");
	rsa_resign(&c.p, c.priv);
	expect(&c.ch, &c.p, c.ts, VERDICT_STALE, "re-signed 10000 s earlier");
	expect(&c.ch, &c.p, 1794990000, VERDICT_OK, "re-signed, checked at its time");
	rsa_case_free(&c);
}
END_TEST

START_TEST(test_epay_rsa_timestamp_required)
{
	struct rsa_case c;
	struct event ev;
	enum verdict got;

	/* V2 notifications carry a signed timestamp; one without it is refused */
	rsa_case_init(&c, 0);
	params_free(&c.p);
	params_from(&c.p, json_object_get(c.vec, "params"), "timestamp");
	rsa_resign(&c.p, c.priv);
	expect(&c.ch, &c.p, c.ts, VERDICT_MISSING_FIELD, "RSA without timestamp, re-signed");

	pset(&c.p, "timestamp", "");
	rsa_resign(&c.p, c.priv);
	expect(&c.ch, &c.p, c.ts, VERDICT_MISSING_FIELD, "RSA with an empty timestamp, re-signed");

	/* a timestamp that is not a number of seconds is not within the window */
	pset(&c.p, "timestamp", "1795000000.5");
	rsa_resign(&c.p, c.priv);
	got = run(&c.ch, &c.p, c.ts, &ev);
	ck_assert_msg(got != VERDICT_OK, "timestamp 1795000000.5 accepted");
	pset(&c.p, "timestamp", "-1795000000");
	rsa_resign(&c.p, c.priv);
	got = run(&c.ch, &c.p, c.ts, &ev);
	ck_assert_msg(got != VERDICT_OK, "timestamp -1795000000 accepted");
	rsa_case_free(&c);
}
END_TEST

START_TEST(test_epay_rsa_refuses_md5)
{
	struct rsa_case c;
	char sign[33];

	/* an MD5 sign with the merchant key does not pass on an RSA channel */
	rsa_case_init(&c, 0);
	epay_md5_sign(&c.p, c.ch.key, sign);
	pset(&c.p, "sign", sign);
	expect(&c.ch, &c.p, c.ts, VERDICT_BAD_SIGNATURE, "MD5 sign on an RSA channel");
	rsa_case_free(&c);

	/* asking for MD5 is a sign_type mismatch, even with a valid RSA sign
	 * (sign_type is not signed) */
	rsa_case_init(&c, 0);
	pset(&c.p, "sign_type", "MD5");
	expect(&c.ch, &c.p, c.ts, VERDICT_SIGN_TYPE, "sign_type=MD5 on an RSA channel");
	rsa_case_free(&c);
}
END_TEST

START_TEST(test_epay_rsa_wrong_merchant)
{
	struct rsa_case c;

	rsa_case_init(&c, 0);
	chan_set(&c.ch.merchant_id, "1002");
	expect(&c.ch, &c.p, c.ts, VERDICT_WRONG_MERCHANT, "RSA, channel merchant_id differs");
	rsa_case_free(&c);
}
END_TEST

/* ---- polls: the query, every kind of answer, the sweep ------------------- */

#define EPAY_KEY "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i"
/* epay's sweep, through its row of the table (family_epay.c's page size,
 * checked in test_epay_sweep_query). */
#define EPAY_SWEEP_PAGE 50
#define epay_sweep_query(ch, page, q) family_find("epay")->sweep_query((ch), (page), (q))
#define epay_sweep_parse(ch, body, len, ans, max, more) \
	family_find("epay")->sweep_parse((ch), (body), (len), (ans), (max), (more))

static void
epay_chan(struct channel *ch)
{
	poll_chan_init(ch, "shop-epay", "epay", "1001", EPAY_KEY);
}

START_TEST(test_epay_query)
{
	struct channel ch;
	struct poll_query q;

	epay_chan(&ch);
	ck_assert(ch.family->poll_query != NULL && ch.family->poll_parse != NULL);
	ck_assert_int_eq(ch.family->poll_query(&ch, "20160806151343349", &q), 0);
	ck_assert_str_eq(q.method, "GET");
	ck_assert_str_eq(q.url,
	    POLL_API "/api.php?act=order&pid=1001&key=" EPAY_KEY "&out_trade_no=20160806151343349");
	ck_assert_ptr_null(q.body);
	poll_query_free(&q);
	ck_assert_ptr_null(q.url);

	/* Values are URL-encoded as PHP does. */
	ck_assert_int_eq(ch.family->poll_query(&ch, "A 1&b=2+会", &q), 0);
	ck_assert_str_eq(q.url,
	    POLL_API "/api.php?act=order&pid=1001&key=" EPAY_KEY
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
	    POLL_API "/api.php?act=orders&pid=1001&key=" EPAY_KEY "&limit=50&page=1&offset=0");
	ck_assert_ptr_null(q.body);
	poll_query_free(&q);
	ck_assert_int_eq(epay_sweep_query(&ch, 3, &q), 0);
	ck_assert_str_eq(q.url,
	    POLL_API "/api.php?act=orders&pid=1001&key=" EPAY_KEY "&limit=50&page=3&offset=100");
	poll_query_free(&q);
	ck_assert_int_eq(epay_sweep_query(&ch, 0, &q), -1);
	ck_assert_ptr_null(q.url);
	chan_free(&ch);
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
		poll_chan_init(&ch, "shop-epay", "epay", vectors_str(p, "pid"),
		    vectors_str(vec, "key"));
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
	    "{\"code\":-1,\"msg\":\"bad request " POLL_API "/api.php?act=order&pid=1001&key=%s\"}",
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

	poll_chan_init(&ch, "shop-epay", "epay", vectors_str(p, "pid"), vectors_str(vec, "key"));
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

/* Every configured secret, not only the channel's key, is masked in what an
 * answer leaves: the detail and the raw fields of a paid answer (stored in
 * the event). */
START_TEST(test_epay_answer_masks_every_secret)
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

	memset(&cfg, 0, sizeof(cfg));
	cfg.secrets = secs;
	cfg.nsecrets = sizeof(secs) / sizeof(secs[0]);
	epay_chan(&ch);
	config_set_masking(&cfg);

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

/* ---- the gateway client: refund, account, settlements (SPEC §10.3) ------ */

#define CLIENT_KEY "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i"

static void
client_chan(struct channel *ch)
{
	chan_init(ch, "shop-epay", "epay", SIGN_MD5, "1001", CLIENT_KEY);
	ch->api_base = strdup("https://pay.example.com");
	ck_assert_ptr_nonnull(ch->api_base);
}

static void
client_chan_free(struct channel *ch)
{
	free(ch->api_base);
	ch->api_base = NULL;
	chan_free(ch);
}

/* Parses `body` with `fn` into a fresh answer (the caller frees it). */
static void
client_parse(void (*fn)(const struct channel *, const char *, size_t, struct family_answer *),
    const struct channel *ch, const char *body, struct family_answer *a)
{
	family_answer_init(a);
	fn(ch, body, strlen(body), a);
}

START_TEST(test_epay_client_members)
{
	const struct family *g = family_find("gatepay"), *pi = family_find("payindex");

	ck_assert(family_epay.refund_query != NULL && family_epay.refund_parse != NULL);
	ck_assert(family_epay.account_query != NULL && family_epay.account_parse != NULL);
	ck_assert(family_epay.settle_query != NULL && family_epay.settle_parse != NULL);
	/* the others' gateways have no such API: NULL, and no FAMILY_REFUND */
	ck_assert(g != NULL && pi != NULL);
	ck_assert(g->refund_query == NULL && g->account_query == NULL && g->settle_query == NULL);
	ck_assert(
	    pi->refund_query == NULL && pi->account_query == NULL && pi->settle_query == NULL);
	ck_assert_uint_eq(g->caps & FAMILY_REFUND, 0);
	ck_assert_uint_eq(pi->caps & FAMILY_REFUND, 0);
}
END_TEST

START_TEST(test_epay_refund_query)
{
	struct family_refund r = { "20160806151343349021", "2016 08&06", "1.50" };
	struct poll_query q;
	struct channel ch;

	client_chan(&ch);
	ck_assert_int_eq(family_epay.refund_query(&ch, &r, &q), 0);
	ck_assert_str_eq(q.method, "POST");
	ck_assert_str_eq(q.url, "https://pay.example.com/api.php?act=refund");
	ck_assert_str_eq(q.body,
	    "pid=1001&key=" CLIENT_KEY "&trade_no=20160806151343349021"
	    "&out_trade_no=2016+08%2606&money=1.50");
	ck_assert_uint_eq(q.body_len, strlen(q.body));
	poll_query_free(&q);
	/* one id only */
	r.trade_no = NULL;
	r.out_trade_no = "20160806151343349";
	ck_assert_int_eq(family_epay.refund_query(&ch, &r, &q), 0);
	ck_assert_str_eq(q.body,
	    "pid=1001&key=" CLIENT_KEY "&out_trade_no=20160806151343349&money=1.50");
	poll_query_free(&q);
	r.out_trade_no = NULL;
	ck_assert_int_eq(family_epay.refund_query(&ch, &r, &q), -1);
	client_chan_free(&ch);
}
END_TEST

START_TEST(test_epay_refund_parse)
{
	struct family_answer a;
	struct channel ch;

	client_chan(&ch);
	client_parse(family_epay.refund_parse, &ch, "{\"code\":1,\"msg\":\"退款成功\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_OK);
	ck_assert_str_eq(a.code, "1");
	ck_assert_str_eq(a.msg, "退款成功");
	ck_assert_str_eq(params_value(&a.raw, "code"), "1");
	ck_assert_str_eq(json_string_value(json_object_get(a.data, "msg")), "退款成功");
	family_answer_free(&a);
	/* code as a string, as some PHP prints it */
	client_parse(family_epay.refund_parse, &ch, "{\"code\":\"1\",\"msg\":\"ok\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_OK);
	family_answer_free(&a);
	/* refused: the gateway's code and message */
	client_parse(family_epay.refund_parse, &ch,
	    "{\"code\":-1,\"msg\":\"退款金额必须与订单金额一致\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_REFUSED);
	ck_assert_str_eq(a.code, "-1");
	ck_assert_str_eq(a.msg, "退款金额必须与订单金额一致");
	ck_assert_ptr_null(a.data);
	family_answer_free(&a);
	/* an echoed key is masked, a `key` field is dropped */
	client_parse(family_epay.refund_parse, &ch,
	    "{\"code\":-3,\"msg\":\"key " CLIENT_KEY " refused\",\"key\":\"" CLIENT_KEY "\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_REFUSED);
	ck_assert_str_eq(a.msg, "key *** refused");
	ck_assert_ptr_null(params_value(&a.raw, "key"));
	ck_assert_ptr_null(strstr(params_value(&a.raw, "msg"), CLIENT_KEY));
	ck_assert_ptr_null(strstr(a.detail, CLIENT_KEY));
	family_answer_free(&a);
	/* no usable answer: the outcome is not known */
	client_parse(family_epay.refund_parse, &ch, "<br /><b>Warning</b>: {\"code\":1", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_GARBAGE);
	family_answer_free(&a);
	client_parse(family_epay.refund_parse, &ch, "[1]", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_GARBAGE);
	family_answer_free(&a);
	client_parse(family_epay.refund_parse, &ch, "{\"msg\":\"退款成功\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_GARBAGE);
	family_answer_free(&a);
	client_chan_free(&ch);
}
END_TEST

START_TEST(test_epay_account)
{
	struct family_answer a;
	struct poll_query q;
	struct channel ch;
	char *text;

	client_chan(&ch);
	ck_assert_int_eq(family_epay.account_query(&ch, &q), 0);
	ck_assert_str_eq(q.method, "GET");
	ck_assert_str_eq(q.url,
	    "https://pay.example.com/api.php?act=query&pid=1001&key=" CLIENT_KEY);
	ck_assert_ptr_null(q.body);
	poll_query_free(&q);
	/* the documents' example answer */
	client_parse(family_epay.account_parse, &ch,
	    "{\"code\":1,\"pid\":1001,\"key\":\"" CLIENT_KEY "\",\"active\":1,\"money\":\"12.30\","
	    "\"type\":1,\"account\":\"admin@pay.com\",\"username\":\"张三\",\"orders\":30,"
	    "\"order_today\":15,\"order_lastday\":\"15\"}",
	    &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_OK);
	text = json_dumps(a.data, JSON_COMPACT | JSON_SORT_KEYS);
	ck_assert_str_eq(text,
	    "{\"active\":1,\"balance\":\"12.30\",\"balance_fen\":1230,\"merchant_id\":\"1001\","
	    "\"orders\":30,\"orders_today\":15,\"orders_yesterday\":15,"
	    "\"settle_account\":\"admin@pay.com\",\"settle_method\":\"alipay\","
	    "\"settle_name\":\"张三\",\"settle_type\":1,\"status\":\"active\"}");
	free(text);
	ck_assert_ptr_null(params_value(&a.raw, "key"));
	family_answer_free(&a);
	/* banned; a balance with more decimals than fen */
	client_parse(family_epay.account_parse, &ch,
	    "{\"code\":1,\"pid\":\"1001\",\"active\":0,\"money\":\"0.125\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_OK);
	ck_assert_str_eq(json_string_value(json_object_get(a.data, "status")), "banned");
	ck_assert_str_eq(json_string_value(json_object_get(a.data, "balance")), "0.125");
	ck_assert(json_is_null(json_object_get(a.data, "balance_fen")));
	family_answer_free(&a);
	/* another merchant's account is not passed on */
	client_parse(family_epay.account_parse, &ch, "{\"code\":1,\"pid\":1002,\"money\":\"1\"}",
	    &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_GARBAGE);
	ck_assert_ptr_null(a.data);
	family_answer_free(&a);
	client_parse(family_epay.account_parse, &ch, "{\"code\":-2,\"msg\":\"KEY校验失败\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_REFUSED);
	ck_assert_str_eq(a.code, "-2");
	family_answer_free(&a);
	client_chan_free(&ch);
}
END_TEST

START_TEST(test_epay_settle)
{
	struct family_answer a;
	struct poll_query q;
	struct channel ch;
	json_t *list;
	char *text;

	client_chan(&ch);
	ck_assert_int_eq(family_epay.settle_query(&ch, &q), 0);
	ck_assert_str_eq(q.url,
	    "https://pay.example.com/api.php?act=settle&pid=1001&key=" CLIENT_KEY);
	poll_query_free(&q);
	client_parse(family_epay.settle_parse, &ch,
	    "{\"code\":1,\"msg\":\"查询结算记录成功！\",\"data\":[{\"id\":7,\"money\":\"100.5\","
	    "\"key\":\"" CLIENT_KEY "\",\"account\":\"a@b.c\",\"extra\":{\"x\":1}},"
	    "{\"id\":\"8\",\"money\":\"x\",\"note\":\"paid to " CLIENT_KEY "\"},3]}",
	    &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_OK);
	text = json_dumps(a.data, JSON_COMPACT | JSON_SORT_KEYS);
	ck_assert_str_eq(text,
	    "{\"settlements\":[{\"account\":\"a@b.c\",\"id\":\"7\",\"money\":\"100.5\","
	    "\"money_fen\":10050},{\"id\":\"8\",\"money\":\"x\",\"note\":\"paid to ***\"}]}");
	free(text);
	family_answer_free(&a);
	/* no data: none */
	client_parse(family_epay.settle_parse, &ch, "{\"code\":1,\"data\":null}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_OK);
	list = json_object_get(a.data, "settlements");
	ck_assert(json_is_array(list) && json_array_size(list) == 0);
	family_answer_free(&a);
	client_parse(family_epay.settle_parse, &ch, "{\"code\":1,\"data\":\"none\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_GARBAGE);
	family_answer_free(&a);
	client_parse(family_epay.settle_parse, &ch, "{\"code\":-5,\"msg\":\"No Act!\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_REFUSED);
	ck_assert_str_eq(a.msg, "No Act!");
	family_answer_free(&a);
	client_chan_free(&ch);
}
END_TEST

/* order.refunded ids (docs/payments.md): md5 of channel NUL trade id NUL
 * "refunded" NUL refund_id, never a payment event's id. */
START_TEST(test_refund_event_id)
{
	char id[EVENT_ID_LEN + 1], other[EVENT_ID_LEN + 1];

	ck_assert_int_eq(event_make_refund_id(id, "shop-epay", "20160806151343349021", "RF-1"), 0);
	ck_assert_str_eq(id, "evt_03e927537c305ff302a3049f5ebd2a49");
	ck_assert_int_eq(event_make_id(other, "shop-epay", "20160806151343349021", "refunded"), 0);
	ck_assert_str_ne(id, other);
	ck_assert_int_eq(event_make_refund_id(other, "shop-epay", "20160806151343349021", "RF-2"),
	    0);
	ck_assert_str_ne(id, other);
}
END_TEST

/* ---- creating a payment (SPEC §10.1) ------------------------------------ */

static const char *const epay_sign_exclude[] = { "sign", "sign_type", NULL };

/* The reference signature of a create form (SPEC §2.1) checks the family's. */
static void
epay_check_signed(const struct params *p, const char *key)
{
	char want[33];
	size_t n;
	char *s = ref_sign_string(p, epay_sign_exclude, SKIP_EMPTY, &n);

	md5_concat(s, n, key, want);
	free(s);
	ck_assert_str_eq(params_value(p, "sign"), want);
	ck_assert_str_eq(params_value(p, "sign_type"), "MD5");
}

START_TEST(test_epay_create_request)
{
	struct channel ch;
	struct pay_request pr;
	struct poll_query q;
	struct params p;
	const char *why = "x";

	chan_init(&ch, "shop", "epay", SIGN_MD5, "1001", "K3yK3yK3yK3y");
	chan_set(&ch.api_base, "https://gw.example");
	pay_request_init(&pr, "ORD-1", "12.30");
	pr.method = "alipay";
	pr.subject = "VIP会员 & 年费=1";
	pr.param = "uid=7&ref=a=b";
	ck_assert_int_eq(family_epay.create_request(&ch, &pr, &q, &why), 0);
	ck_assert_str_eq(q.method, "POST");
	ck_assert_str_eq(q.url, "https://gw.example/mapi.php");
	ck_assert_uint_eq(q.body_len, strlen(q.body));
	form_params(&p, q.body);
	ck_assert_str_eq(params_value(&p, "pid"), "1001");
	ck_assert_str_eq(params_value(&p, "type"), "alipay");
	ck_assert_str_eq(params_value(&p, "out_trade_no"), "ORD-1");
	ck_assert_str_eq(params_value(&p, "money"), "12.30");
	ck_assert_str_eq(params_value(&p, "name"), "VIP会员 & 年费=1");
	ck_assert_str_eq(params_value(&p, "param"), "uid=7&ref=a=b");
	ck_assert_str_eq(params_value(&p, "notify_url"), "https://relay.example/notify/shop");
	ck_assert_str_eq(params_value(&p, "return_url"), "https://relay.example/return/shop");
	ck_assert_str_eq(params_value(&p, "clientip"), "127.0.0.1"); /* the default */
	ck_assert_ptr_null(params_value(&p, "device"));              /* the platform's */
	ck_assert(strstr(q.body, "K3yK3y") == NULL);
	epay_check_signed(&p, "K3yK3yK3yK3y");
	params_free(&p);
	poll_query_free(&q);

	/* the channel's device, then the caller's; no subject: the order id */
	chan_set(&ch.device, "jump");
	pr.subject = NULL;
	pr.param = NULL;
	pr.client_ip = "10.1.2.3";
	ck_assert_int_eq(family_epay.create_request(&ch, &pr, &q, &why), 0);
	form_params(&p, q.body);
	ck_assert_str_eq(params_value(&p, "device"), "jump");
	ck_assert_str_eq(params_value(&p, "name"), "ORD-1");
	ck_assert_str_eq(params_value(&p, "clientip"), "10.1.2.3");
	ck_assert_ptr_null(params_value(&p, "param")); /* empty: not sent */
	epay_check_signed(&p, "K3yK3yK3yK3y");
	params_free(&p);
	poll_query_free(&q);
	pr.device = "mobile";
	ck_assert_int_eq(family_epay.create_request(&ch, &pr, &q, &why), 0);
	form_params(&p, q.body);
	ck_assert_str_eq(params_value(&p, "device"), "mobile");
	params_free(&p);
	poll_query_free(&q);

	/* what cannot be created */
	pr.method = NULL;
	ck_assert_int_eq(family_epay.create_request(&ch, &pr, &q, &why), -1);
	ck_assert_ptr_nonnull(why);
	ck_assert_ptr_null(q.url);
	pr.method = "alipay";
	pr.product_id = "8";
	ck_assert_int_eq(family_epay.create_request(&ch, &pr, &q, &why), -1);
	ck_assert_ptr_nonnull(why);
	pr.product_id = NULL;
	ch.sign_type = SIGN_RSA;
	ck_assert_int_eq(family_epay.create_request(&ch, &pr, &q, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "RSA"));
	chan_free(&ch);
}
END_TEST

START_TEST(test_epay_create_redirect)
{
	struct channel ch;
	struct pay_request pr;
	struct params p;
	const char *why = NULL;
	char *url = NULL;
	const char *prefix = "https://gw.example/submit.php?";

	chan_init(&ch, "shop", "epay", SIGN_MD5, "1001", "K3yK3yK3yK3y");
	chan_set(&ch.api_base, "https://gw.example");
	chan_set(&ch.device, "jump");
	pay_request_init(&pr, "ORD-2", "0.50");
	pr.method = "wxpay";
	pr.subject = "充值 a&b=c";
	pr.param = "x=1&y=2";
	ck_assert_int_eq(family_epay.create_redirect(&ch, &pr, &url, &why), 0);
	ck_assert_int_eq(strncmp(url, prefix, strlen(prefix)), 0);
	form_params(&p, url + strlen(prefix));
	ck_assert_str_eq(params_value(&p, "name"), "充值 a&b=c");
	ck_assert_str_eq(params_value(&p, "param"), "x=1&y=2");
	ck_assert_str_eq(params_value(&p, "money"), "0.50");
	/* submit.php takes neither */
	ck_assert_ptr_null(params_value(&p, "clientip"));
	ck_assert_ptr_null(params_value(&p, "device"));
	epay_check_signed(&p, "K3yK3yK3yK3y");
	params_free(&p);
	free(url);
	chan_free(&ch);
}
END_TEST

static void
epay_parse(const char *body, struct pay_result *r)
{
	struct channel ch;

	chan_init(&ch, "shop", "epay", SIGN_MD5, "1001", "K3yK3yK3yK3y");
	memset(r, 0, sizeof(*r));
	family_epay.create_parse(&ch, body, strlen(body), r);
	chan_free(&ch);
}

START_TEST(test_epay_create_parse)
{
	struct pay_result r;

	epay_parse("{\"code\":1,\"msg\":\"succ\",\"trade_no\":\"2024A\",\"payurl\":\"https://gw/p/"
		   "1\"}",
	    &r);
	ck_assert(r.ok);
	ck_assert_int_eq(r.kind, PAY_URL);
	ck_assert_str_eq(r.url, "https://gw/p/1");
	ck_assert_str_eq(r.trade_no, "2024A");
	pay_result_free(&r);
	epay_parse("{\"code\":\"1\",\"trade_no\":123,\"qrcode\":\"weixin://wxpay/bizpayurl?pr=0\"}",
	    &r);
	ck_assert(r.ok);
	ck_assert_int_eq(r.kind, PAY_QRCODE);
	ck_assert_str_eq(r.trade_no, "123");
	pay_result_free(&r);
	epay_parse("{\"code\":1,\"urlscheme\":\"weixin://dl/business/?ticket=t\"}", &r);
	ck_assert(r.ok);
	ck_assert_int_eq(r.kind, PAY_URLSCHEME);
	ck_assert_ptr_null(r.trade_no);
	ck_assert_str_eq(pay_url_kind_str(r.kind), "urlscheme");
	pay_result_free(&r);
	/* errors: the gateway's code and msg, or what is wrong with the answer */
	epay_parse("{\"code\":-1,\"msg\":\"签名校验失败\"}", &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.code, "-1");
	ck_assert_str_eq(r.msg, "签名校验失败");
	pay_result_free(&r);
	epay_parse("{\"code\":1,\"msg\":\"succ\"}", &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.code, "");
	pay_result_free(&r);
	epay_parse("<html>502 Bad Gateway</html>", &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.code, "");
	ck_assert_ptr_null(r.url);
	pay_result_free(&r);
	epay_parse("{\"msg\":\"no code\"}", &r);
	ck_assert(!r.ok);
	pay_result_free(&r);
}
END_TEST

/* A gateway echoing the key in a long message: the key is masked before
 * the message is cut to fit, or the cut leaves its start, which no later
 * masking finds (found by fuzz/fuzz_client.c). The code is cut between
 * characters: it goes into a JSON answer. */
START_TEST(test_epay_create_parse_masks_before_cut)
{
	char body[600], filler[249];
	struct pay_result r;
	json_t *j;

	memset(filler, 'x', sizeof(filler) - 1);
	filler[sizeof(filler) - 1] = '\0';
	/* the key (12 bytes) at bytes 248-259 of msg: across the cut at 255 */
	snprintf(body, sizeof(body), "{\"code\":-1,\"msg\":\"%sK3yK3yK3yK3y expired\"}", filler);
	epay_parse(body, &r);
	ck_assert(!r.ok);
	ck_assert_ptr_null(strstr(r.msg, "K3y"));
	ck_assert_ptr_nonnull(strstr(r.msg, "***"));
	pay_result_free(&r);
	/* as the code, whole */
	epay_parse("{\"code\":\"K3yK3yK3yK3y\",\"msg\":\"bad key\"}", &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.code, "***");
	pay_result_free(&r);
	/* a code of 36 bytes: cut to fit between characters */
	epay_parse("{\"code\":\"错误错误错误错误错误错误\",\"msg\":\"x\"}", &r);
	ck_assert(!r.ok);
	ck_assert_ptr_nonnull(j = json_string(r.code));
	json_decref(j);
	ck_assert_uint_lt(strlen(r.code), sizeof(r.code));
	pay_result_free(&r);
	/* an empty msg says so */
	epay_parse("{\"code\":-1,\"msg\":\"\"}", &r);
	ck_assert_str_eq(r.code, "-1");
	ck_assert_str_eq(r.msg, "(no msg)");
	pay_result_free(&r);
}
END_TEST

/* A platform echoing the key as a member name: the names of what is
 * passed on (raw, the refund event's; the settlement records) are masked
 * as their values are (found by fuzz/fuzz_client.c). */
START_TEST(test_epay_client_masks_names)
{
	struct family_answer a;
	struct channel ch;
	size_t i;
	char *text;

	client_chan(&ch);
	client_parse(family_epay.refund_parse, &ch,
	    "{\"code\":1,\"msg\":\"ok\",\"pi" CLIENT_KEY "d\":1001}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_OK);
	ck_assert_uint_eq(a.raw.n, 3);
	for (i = 0; i < a.raw.n; i++)
		ck_assert_ptr_null(strstr(a.raw.v[i].name, CLIENT_KEY));
	ck_assert_str_eq(params_value(&a.raw, "pi***d"), "1001");
	family_answer_free(&a);
	client_parse(family_epay.account_parse, &ch,
	    "{\"code\":1,\"pid\":1001,\"money\":\"1\",\"" CLIENT_KEY "\":\"x\"}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_OK);
	for (i = 0; i < a.raw.n; i++)
		ck_assert_ptr_null(strstr(a.raw.v[i].name, CLIENT_KEY));
	family_answer_free(&a);
	client_parse(family_epay.settle_parse, &ch,
	    "{\"code\":1,\"data\":[{\"id\":\"1\",\"to " CLIENT_KEY "\":\"x\"}]}", &a);
	ck_assert_int_eq(a.outcome, FAMILY_ANSWER_OK);
	text = json_dumps(a.data, JSON_COMPACT | JSON_SORT_KEYS);
	ck_assert_str_eq(text, "{\"settlements\":[{\"id\":\"1\",\"to ***\":\"x\"}]}");
	free(text);
	family_answer_free(&a);
	client_chan_free(&ch);
}
END_TEST

static Suite *
family_epay_suite(void)
{
	Suite *s = suite_create("family_epay");
	TCase *tc;

	tc = tcase_create("epay");
	tcase_add_test(tc, test_epay_row);
	tcase_add_test(tc, test_sign_string_epay_vectors);
	tcase_add_test(tc, test_epay_vectors);
	tcase_add_test(tc, test_epay_sign_altered);
	tcase_add_test(tc, test_epay_sign_uppercase);
	tcase_add_test(tc, test_epay_signed_field_altered);
	tcase_add_test(tc, test_epay_extra_field_resigned);
	tcase_add_test(tc, test_epay_wrong_key);
	tcase_add_test(tc, test_epay_wrong_merchant);
	tcase_add_test(tc, test_epay_missing_sign);
	tcase_add_test(tc, test_epay_missing_fields);
	tcase_add_test(tc, test_epay_sign_type);
	tcase_add_test(tc, test_epay_bad_amount);
	tcase_add_test(tc, test_epay_php_float_money);
	tcase_add_test(tc, test_epay_other_statuses);
	suite_add_tcase(s, tc);

	tcase_add_test(tc, test_epay_create_request);
	tcase_add_test(tc, test_epay_create_redirect);
	tcase_add_test(tc, test_epay_create_parse);
	tcase_add_test(tc, test_epay_create_parse_masks_before_cut);
	tcase_add_test(tc, test_epay_client_masks_names);
	tc = tcase_create("epay_rsa");
	tcase_add_test(tc, test_sign_string_epay_rsa_vectors);
	tcase_add_test(tc, test_epay_rsa_vectors);
	tcase_add_test(tc, test_epay_rsa_time_window);
	tcase_add_test(tc, test_epay_rsa_fresh_signatures);
	tcase_add_test(tc, test_epay_rsa_tampered);
	tcase_add_test(tc, test_epay_rsa_timestamp_required);
	tcase_add_test(tc, test_epay_rsa_refuses_md5);
	tcase_add_test(tc, test_epay_rsa_wrong_merchant);
	suite_add_tcase(s, tc);

	tc = tcase_create("poll");
	tcase_add_test(tc, test_epay_query);
	tcase_add_test(tc, test_epay_sweep_query);
	tcase_add_test(tc, test_epay_paid);
	tcase_add_test(tc, test_epay_ids_match_callbacks);
	tcase_add_test(tc, test_epay_states);
	tcase_add_test(tc, test_epay_garbage);
	tcase_add_test(tc, test_epay_json_money);
	tcase_add_test(tc, test_epay_out_trade_no_copied);
	tcase_add_test(tc, test_epay_detail_hides_key);
	tcase_add_test(tc, test_epay_answer_masks_every_secret);
	suite_add_tcase(s, tc);

	tc = tcase_create("sweep");
	tcase_add_test(tc, test_sweep_mixed);
	tcase_add_test(tc, test_sweep_full_page);
	tcase_add_test(tc, test_sweep_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("epay_client");
	tcase_add_test(tc, test_epay_client_members);
	tcase_add_test(tc, test_epay_refund_query);
	tcase_add_test(tc, test_epay_refund_parse);
	tcase_add_test(tc, test_epay_account);
	tcase_add_test(tc, test_epay_settle);
	tcase_add_test(tc, test_refund_event_id);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(family_epay_suite());
}
