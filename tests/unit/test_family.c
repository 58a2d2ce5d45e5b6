/* The three gateway families (SPEC §2): every vector verifies and yields the
 * right event, and every way of getting a callback wrong is refused with the
 * right verdict. Callbacks the vectors do not cover are signed here with
 * small reference signers written from the SPEC (checked against the vectors
 * first), so a refusal can only come from the rule under test. */
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
#include "form.h"
#include "util.h"
#include "vectors.h"

static const char *const epay_exclude[] = { "sign", "sign_type", NULL };
static const char *const payindex_exclude[] = { "sign", "attach", NULL };

/* ---- fixtures ---------------------------------------------------------- */

static void
chan_init(struct channel *ch, const char *name, const char *family, enum sign_type st,
    const char *merchant_id, const char *key)
{
	memset(ch, 0, sizeof(*ch));
	ch->name = strdup(name);
	ch->family = family_find(family);
	ch->sign_type = st;
	ch->merchant_id = strdup(merchant_id);
	ch->key = strdup(key);
	ch->key_len = strlen(key);
	ck_assert_msg(ch->family != NULL, "family_find(\"%s\") = NULL", family);
	ck_assert(ch->name != NULL && ch->merchant_id != NULL && ch->key != NULL);
}

static void
chan_free(struct channel *ch)
{
	free(ch->name);
	free(ch->merchant_id);
	free(ch->key);
	crypto_pkey_free(ch->platform_key);
	memset(ch, 0, sizeof(*ch));
}

/* Replaces the channel's merchant_id / key (for the negative cases). */
static void
chan_set(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
	ck_assert_ptr_nonnull(*field);
}

static void
pset(struct params *p, const char *name, const char *value)
{
	ck_assert_msg(params_set(p, name, value, strlen(value)) == 0, "params_set(%s)", name);
}

/* The vector's params (an object of strings) into a fresh `p`, but `drop`. */
static void
params_from(struct params *p, json_t *obj, const char *drop)
{
	const char *k;
	json_t *v;

	ck_assert_msg(json_is_object(obj), "vector has no params object");
	params_init(p);
	json_object_foreach(obj, k, v)
	{
		ck_assert_msg(json_is_string(v), "vector param %s is not a string", k);
		if (drop != NULL && strcmp(k, drop) == 0)
			continue;
		ck_assert_int_eq(params_set(p, k, json_string_value(v), json_string_length(v)), 0);
	}
}

static enum verdict
run(const struct channel *ch, const struct params *p, time_t now, struct event *ev)
{
	memset(ev, 0, sizeof(*ev));
	return ch->family->verify(ch, p, now, ev);
}

static void
expect(const struct channel *ch, const struct params *p, time_t now, enum verdict want,
    const char *what)
{
	struct event ev;
	enum verdict got = run(ch, p, now, &ev);

	ck_assert_msg(got == want, "%s (%s): verdict %s, want %s", what, ch->family->name,
	    verdict_str(got), verdict_str(want));
}

/* ---- reference signers, from SPEC §2 ------------------------------------ */

static int
cmp_param_name(const void *a, const void *b)
{
	const struct param *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* PHP trim()'s set: " \t\n\r\0\x0B". */
static int
php_blank(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\0' && c != '\v')
			return 0;
	}
	return 1;
}

static int
excluded(const char *name, const char *const *exclude)
{
	for (; *exclude != NULL; exclude++)
		if (strcmp(name, *exclude) == 0)
			return 1;
	return 0;
}

/* "k1=v1&k2=v2" sorted by name in byte order; the caller frees it. */
static char *
ref_sign_string(const struct params *p, const char *const *exclude, unsigned skip, size_t *lenp)
{
	const struct param **v = calloc(p->n + 1, sizeof(*v));
	size_t n = 0, len = 0, i, off = 0;
	char *s;

	ck_assert_ptr_nonnull(v);
	for (i = 0; i < p->n; i++) {
		const struct param *pr = &p->v[i];

		if (excluded(pr->name, exclude))
			continue;
		if ((skip & SKIP_EMPTY) && pr->vlen == 0)
			continue;
		if ((skip & SKIP_ZERO) && pr->vlen == 1 && pr->value[0] == '0')
			continue;
		if ((skip & SKIP_BLANK) && php_blank(pr->value, pr->vlen))
			continue;
		v[n++] = pr;
		len += strlen(pr->name) + pr->vlen + 2;
	}
	qsort(v, n, sizeof(*v), cmp_param_name);
	s = malloc(len + 1);
	ck_assert_ptr_nonnull(s);
	for (i = 0; i < n; i++) {
		size_t nl = strlen(v[i]->name);

		if (i > 0)
			s[off++] = '&';
		memcpy(s + off, v[i]->name, nl);
		off += nl;
		s[off++] = '=';
		memcpy(s + off, v[i]->value, v[i]->vlen);
		off += v[i]->vlen;
	}
	s[off] = '\0';
	free(v);
	*lenp = off;
	return s;
}

/* md5 hex of a + b (b a C string). */
static void
md5_concat(const char *a, size_t alen, const char *b, char out[33])
{
	size_t blen = strlen(b);
	char *buf = malloc(alen + blen + 1);

	ck_assert_ptr_nonnull(buf);
	memcpy(buf, a, alen);
	memcpy(buf + alen, b, blen);
	ck_assert_int_eq(crypto_md5_hex(buf, alen + blen, out), 0);
	free(buf);
}

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

static void
gatepay_md5_sign(const struct params *p, const char *appkey, const char *appsecret, char out[33])
{
	static const char *const order[] = { "order_id", "out_order_id", "price", "realprice",
		"type", "paytime", "extend" };
	char inner[33];
	size_t len = strlen(appkey) + 1, i;
	char *s;

	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *v = params_value(p, order[i]);

		len += v ? strlen(v) : 0;
	}
	s = malloc(len);
	ck_assert_ptr_nonnull(s);
	strcpy(s, appkey);
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *v = params_value(p, order[i]);

		if (v != NULL)
			strcat(s, v);
	}
	ck_assert_int_eq(crypto_md5_hex(s, strlen(s), inner), 0);
	md5_concat(inner, 32, appsecret, out);
	free(s);
}

static void
gatepay_resign(struct params *p, const char *appkey, const char *appsecret)
{
	char sign[33];

	gatepay_md5_sign(p, appkey, appsecret, sign);
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

/* Exact fen of a well-formed vector amount, independent of amount.c. */
static int64_t
ref_fen(const char *s)
{
	int64_t v = 0;
	int decimals = -1;

	for (; *s != '\0'; s++) {
		if (*s == '.') {
			decimals = 0;
			continue;
		}
		ck_assert_msg(isdigit((unsigned char)*s), "ref_fen: bad vector amount");
		if (decimals >= 2) {
			ck_assert_msg(*s == '0', "ref_fen: bad vector amount");
			continue;
		}
		v = v * 10 + (*s - '0');
		if (decimals >= 0)
			decimals++;
	}
	for (decimals = decimals < 0 ? 0 : decimals; decimals < 2; decimals++)
		v *= 10;
	return v;
}

/* ---- what a verified callback must produce ------------------------------ */

struct want {
	const char *trade_no, *out_trade_no, *raw_status;
	bool paid;
	const char *amount, *paid_amount;
	const char *method, *subject, *passthrough; /* NULL: not checked / absent */
	const char *passthrough_param;              /* name of the passthrough field */
};

static void
check_event(const char *desc, const struct channel *ch, const struct event *ev,
    const struct want *w)
{
	char id[EVENT_ID_LEN + 1];
	const char *status = w->paid ? "paid" : w->raw_status;

	ck_assert_msg(ev->channel && strcmp(ev->channel, ch->name) == 0, "%s: channel", desc);
	ck_assert_msg(ev->family && strcmp(ev->family, ch->family->name) == 0, "%s: family %s",
	    desc, ev->family ? ev->family : "(null)");
	ck_assert_msg(ev->merchant_id && strcmp(ev->merchant_id, ch->merchant_id) == 0,
	    "%s: merchant_id", desc);
	ck_assert_msg(ev->trade_no && strcmp(ev->trade_no, w->trade_no) == 0,
	    "%s: trade_no %s, want %s", desc, ev->trade_no ? ev->trade_no : "(null)", w->trade_no);
	ck_assert_msg(ev->out_trade_no && strcmp(ev->out_trade_no, w->out_trade_no) == 0,
	    "%s: out_trade_no %s, want %s", desc, ev->out_trade_no ? ev->out_trade_no : "(null)",
	    w->out_trade_no);
	ck_assert_msg(ev->status && strcmp(ev->status, status) == 0, "%s: status %s, want %s", desc,
	    ev->status ? ev->status : "(null)", status);
	ck_assert_msg(ev->type == (w->paid ? EVENT_PAID : EVENT_STATUS), "%s: type %s", desc,
	    event_type_str(ev->type));

	ck_assert_msg(ev->amount && strcmp(ev->amount, w->amount) == 0, "%s: amount %s, want %s",
	    desc, ev->amount ? ev->amount : "(null)", w->amount);
	ck_assert_msg(ev->amount_fen == ref_fen(w->amount),
	    "%s: amount_fen %" PRId64 ", want %" PRId64, desc, ev->amount_fen, ref_fen(w->amount));
	ck_assert_msg(ev->paid_amount && strcmp(ev->paid_amount, w->paid_amount) == 0,
	    "%s: paid_amount %s, want %s", desc, ev->paid_amount ? ev->paid_amount : "(null)",
	    w->paid_amount);
	ck_assert_msg(ev->paid_amount_fen == ref_fen(w->paid_amount),
	    "%s: paid_amount_fen %" PRId64 ", want %" PRId64, desc, ev->paid_amount_fen,
	    ref_fen(w->paid_amount));

	if (w->method != NULL)
		ck_assert_msg(ev->method && strcmp(ev->method, w->method) == 0,
		    "%s: method %s, want %s", desc, ev->method ? ev->method : "(null)", w->method);
	if (w->subject != NULL)
		ck_assert_msg(ev->subject && strcmp(ev->subject, w->subject) == 0,
		    "%s: subject %s, want %s", desc, ev->subject ? ev->subject : "(null)",
		    w->subject);
	if (w->passthrough != NULL && *w->passthrough != '\0')
		ck_assert_msg(ev->passthrough && strcmp(ev->passthrough, w->passthrough) == 0,
		    "%s: passthrough %s, want %s", desc,
		    ev->passthrough ? ev->passthrough : "(null)", w->passthrough);
	else
		ck_assert_msg(ev->passthrough == NULL || *ev->passthrough == '\0',
		    "%s: passthrough \"%s\" without a %s", desc, ev->passthrough,
		    w->passthrough_param);

	ck_assert_msg(ev->raw != NULL, "%s: raw not set", desc);
	ck_assert_msg(params_value(ev->raw, "out_trade_no") != NULL ||
		params_value(ev->raw, "out_order_id") != NULL ||
		params_value(ev->raw, "orderid") != NULL,
	    "%s: raw does not hold the received parameters", desc);

	event_make_id(id, ch->name, w->trade_no, status);
	ck_assert_msg(strcmp(ev->id, id) == 0, "%s: id %s, want %s", desc, ev->id, id);
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

static struct want
gatepay_want(const struct params *p)
{
	struct want w = { 0 };

	w.trade_no = params_value(p, "order_id");
	w.out_trade_no = params_value(p, "out_order_id");
	w.paid = true;
	w.amount = params_value(p, "price");
	w.paid_amount = params_value(p, "realprice");
	w.method = params_value(p, "type");
	w.passthrough = params_value(p, "extend");
	w.passthrough_param = "extend";
	return w;
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

/* ---- the table ---------------------------------------------------------- */

START_TEST(test_family_find)
{
	ck_assert_ptr_eq(family_find("epay"), &family_epay);
	ck_assert_ptr_eq(family_find("gatepay"), &family_gatepay);
	ck_assert_ptr_eq(family_find("payindex"), &family_payindex);
	ck_assert_ptr_null(family_find("nope"));
	ck_assert_ptr_null(family_find(""));
	ck_assert_ptr_null(family_find("EPAY"));
	ck_assert_ptr_null(family_find("epay2"));
	ck_assert_str_eq(family_epay.name, "epay");
	ck_assert_str_eq(family_gatepay.name, "gatepay");
	ck_assert_str_eq(family_payindex.name, "payindex");
	ck_assert(family_epay.verify != NULL);
	ck_assert(family_gatepay.verify != NULL);
	ck_assert(family_payindex.verify != NULL);
}
END_TEST

START_TEST(test_ack_bodies)
{
	ck_assert_str_eq(family_epay.ack_body, "success");
	ck_assert_str_eq(family_gatepay.ack_body, "success");
	ck_assert_str_eq(family_payindex.ack_body, "OK");
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

static void
assert_sign_string(const struct params *p, const char *const *exclude, unsigned skip,
    const char *want)
{
	struct sbuf b;

	sbuf_init(&b);
	ck_assert_int_eq(family_sign_string(p, exclude, skip, &b), 0);
	ck_assert_msg(b.len == strlen(want) && (b.len == 0 || memcmp(b.p, want, b.len) == 0),
	    "sign string \"%.*s\", want \"%s\"", (int)b.len, b.len ? b.p : "", want);
	sbuf_free(&b);
}

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

	chan_init(&ch, "shop-x", "payindex", SIGN_MD5, "m-77", "k");
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

/* Changes one hex digit of `s` in place. */
static void
flip_hex_digit(char *s, size_t i)
{
	s[i] = s[i] == '0' ? '1' : '0';
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

/* ---- gatepay ------------------------------------------------------------ */

START_TEST(test_gatepay_vectors)
{
	json_t *root = vectors_load("gatepay.json"), *v;
	size_t i;

	json_array_foreach(vectors_array(root, "vectors"), i, v)
	{
		const char *desc = vectors_str(v, "description");
		const char *appkey = vectors_str(v, "appkey");
		const char *secret = vectors_str(v, "appsecret");
		struct channel ch;
		struct params p;
		struct event ev;
		struct want w;
		enum verdict got;
		char ref[33];

		chan_init(&ch, "shop-gatepay", "gatepay", SIGN_MD5, appkey, secret);
		params_from(&p, json_object_get(v, "params"), NULL);
		gatepay_md5_sign(&p, appkey, secret, ref);
		ck_assert_msg(strcmp(ref, vectors_str(v, "sign")) == 0,
		    "%s: test signer disagrees with the vector", desc);

		got = run(&ch, &p, time(NULL), &ev);
		ck_assert_msg(got == VERDICT_OK, "%s: verdict %s", desc, verdict_str(got));
		w = gatepay_want(&p);
		check_event(desc, &ch, &ev, &w);
		params_free(&p);
		chan_free(&ch);
	}
	json_decref(root);
}
END_TEST

struct gp_case {
	json_t *root, *vec;
	const char *appkey, *secret;
	struct channel ch;
	struct params p;
};

static void
gp_case_init(struct gp_case *c, size_t idx, const char *drop)
{
	c->root = vectors_load("gatepay.json");
	c->vec = json_array_get(vectors_array(c->root, "vectors"), idx);
	ck_assert_ptr_nonnull(c->vec);
	c->appkey = vectors_str(c->vec, "appkey");
	c->secret = vectors_str(c->vec, "appsecret");
	chan_init(&c->ch, "shop-gatepay", "gatepay", SIGN_MD5, c->appkey, c->secret);
	params_from(&c->p, json_object_get(c->vec, "params"), drop);
}

static void
gp_case_free(struct gp_case *c)
{
	params_free(&c->p);
	chan_free(&c->ch);
	json_decref(c->root);
}

START_TEST(test_gatepay_sign_altered)
{
	struct gp_case c;
	char sign[33];

	gp_case_init(&c, 0, NULL);
	snprintf(sign, sizeof(sign), "%s", params_value(&c.p, "sign"));
	flip_hex_digit(sign, 7);
	pset(&c.p, "sign", sign);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "sign digit changed");
	gp_case_free(&c);

	gp_case_init(&c, 0, NULL);
	chan_set(&c.ch.key, "5ebe2294ecd0e0f08eab7690d2a6ee6a");
	c.ch.key_len = strlen(c.ch.key);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "appsecret differs");
	gp_case_free(&c);
}
END_TEST

START_TEST(test_gatepay_signed_fields_altered)
{
	static const char *const fields[] = { "order_id", "out_order_id", "price", "realprice",
		"type", "paytime", "extend" };
	static const char *const values[] = { "999", "other", "2.88", "2.88", "wxpay", "1557056210",
		"mallory" };
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		struct gp_case c;
		char what[64];

		snprintf(what, sizeof(what), "%s altered", fields[i]);
		gp_case_init(&c, 0, NULL);
		pset(&c.p, fields[i], values[i]);
		expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, what);
		gp_case_free(&c);
	}
}
END_TEST

START_TEST(test_gatepay_appkey)
{
	struct gp_case c;

	/* present and the channel's: fine */
	gp_case_init(&c, 0, NULL);
	pset(&c.p, "appkey", c.appkey);
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "appkey = merchant_id");
	gp_case_free(&c);

	/* present and another: not this channel's notification */
	gp_case_init(&c, 0, NULL);
	pset(&c.p, "appkey", "00000000000000000000000000000000");
	expect(&c.ch, &c.p, time(NULL), VERDICT_WRONG_MERCHANT, "appkey differs");
	gp_case_free(&c);

	/* absent: fine (the vectors have none) */
	gp_case_init(&c, 0, "appkey");
	ck_assert_ptr_null(params_get(&c.p, "appkey"));
	expect(&c.ch, &c.p, time(NULL), VERDICT_OK, "no appkey");
	gp_case_free(&c);
}
END_TEST

START_TEST(test_gatepay_missing)
{
	static const char *const required[] = { "order_id", "out_order_id" };
	struct gp_case c;
	size_t i;

	gp_case_init(&c, 0, "sign");
	expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, "no sign");
	gp_case_free(&c);

	gp_case_init(&c, 0, NULL);
	pset(&c.p, "sign", "");
	expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, "empty sign");
	gp_case_free(&c);

	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		char what[64];

		snprintf(what, sizeof(what), "no %s, re-signed", required[i]);
		gp_case_init(&c, 0, required[i]);
		gatepay_resign(&c.p, c.appkey, c.secret);
		expect(&c.ch, &c.p, time(NULL), VERDICT_MISSING_FIELD, what);
		gp_case_free(&c);
	}
}
END_TEST

START_TEST(test_gatepay_bad_amount)
{
	struct gp_case c;

	gp_case_init(&c, 0, NULL);
	pset(&c.p, "price", "1.001");
	gatepay_resign(&c.p, c.appkey, c.secret);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_AMOUNT, "price 1.001, re-signed");
	gp_case_free(&c);

	gp_case_init(&c, 0, NULL);
	pset(&c.p, "realprice", "1.881");
	gatepay_resign(&c.p, c.appkey, c.secret);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_AMOUNT, "realprice 1.881, re-signed");
	gp_case_free(&c);

	gp_case_init(&c, 0, NULL);
	pset(&c.p, "price", "-1.88");
	gatepay_resign(&c.p, c.appkey, c.secret);
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_AMOUNT, "price -1.88, re-signed");
	gp_case_free(&c);
}
END_TEST

START_TEST(test_gatepay_resigned_ok)
{
	struct gp_case c;
	struct event ev;
	enum verdict got;

	/* the reference signer is accepted: the negative cases above are meaningful */
	gp_case_init(&c, 1, NULL);
	pset(&c.p, "out_order_id", "R-1");
	pset(&c.p, "realprice", "9.5");
	gatepay_resign(&c.p, c.appkey, c.secret);
	got = run(&c.ch, &c.p, time(NULL), &ev);
	ck_assert_msg(got == VERDICT_OK, "re-signed: %s", verdict_str(got));
	ck_assert_str_eq(ev.out_trade_no, "R-1");
	ck_assert_int_eq(ev.paid_amount_fen, 950);
	ck_assert_int_eq(ev.amount_fen, ref_fen(params_value(&c.p, "price")));
	gp_case_free(&c);
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

static Suite *
family_suite(void)
{
	Suite *s = suite_create("family");
	TCase *tc = tcase_create("table");

	tcase_add_test(tc, test_family_find);
	tcase_add_test(tc, test_ack_bodies);
	tcase_add_test(tc, test_verdict_str);
	tcase_add_test(tc, test_sign_string_order_and_skip);
	tcase_add_test(tc, test_sign_string_epay_vectors);
	tcase_add_test(tc, test_sign_string_epay_rsa_vectors);
	tcase_add_test(tc, test_sign_string_payindex_vectors);
	tcase_add_test(tc, test_hex_equal);
	tcase_add_test(tc, test_family_amount);
	tcase_add_test(tc, test_family_finish);
	suite_add_tcase(s, tc);

	tc = tcase_create("epay");
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

	tc = tcase_create("epay_rsa");
	tcase_add_test(tc, test_epay_rsa_vectors);
	tcase_add_test(tc, test_epay_rsa_time_window);
	tcase_add_test(tc, test_epay_rsa_fresh_signatures);
	tcase_add_test(tc, test_epay_rsa_tampered);
	tcase_add_test(tc, test_epay_rsa_timestamp_required);
	tcase_add_test(tc, test_epay_rsa_refuses_md5);
	tcase_add_test(tc, test_epay_rsa_wrong_merchant);
	suite_add_tcase(s, tc);

	tc = tcase_create("gatepay");
	tcase_add_test(tc, test_gatepay_vectors);
	tcase_add_test(tc, test_gatepay_sign_altered);
	tcase_add_test(tc, test_gatepay_signed_fields_altered);
	tcase_add_test(tc, test_gatepay_appkey);
	tcase_add_test(tc, test_gatepay_missing);
	tcase_add_test(tc, test_gatepay_bad_amount);
	tcase_add_test(tc, test_gatepay_resigned_ok);
	suite_add_tcase(s, tc);

	tc = tcase_create("payindex");
	tcase_add_test(tc, test_payindex_vectors);
	tcase_add_test(tc, test_payindex_sign_altered);
	tcase_add_test(tc, test_payindex_unsigned_fields);
	tcase_add_test(tc, test_payindex_wrong_merchant);
	tcase_add_test(tc, test_payindex_missing);
	tcase_add_test(tc, test_payindex_bad_amount);
	tcase_add_test(tc, test_payindex_other_returncodes);
	tcase_add_test(tc, test_payindex_lowercase_sign_is_resigned_ok);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(family_suite());
}
