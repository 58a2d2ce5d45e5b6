/* epay (SPEC §2.1): its row of the table, and every vector of epay.json and
 * epay_rsa.json verifies and yields the right event; every way of getting a
 * callback wrong is refused with the right verdict. Callbacks the vectors do
 * not cover are signed by the reference signer below, written from the SPEC
 * (checked against the vectors first). */
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
	ck_assert_uint_eq(family_epay.caps, FAMILY_RSA | FAMILY_CREATE);
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
	return s;
}

int
main(void)
{
	return run_suite(family_epay_suite());
}
