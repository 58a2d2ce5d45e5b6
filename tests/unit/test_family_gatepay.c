/* gatepay (SPEC §2.2): its row of the table, and every vector of
 * gatepay.json verifies and yields the right event; every way of getting a
 * callback wrong is refused with the right verdict. Callbacks the vectors do
 * not cover are signed by the reference signer below, written from the SPEC
 * (checked against the vectors first). Then its poll query and every
 * kind of answer (docs/reconciliation.md): a paid order found by a poll gets
 * the event id its callback gets. */
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

/* ---- reference signer, from SPEC §2.2 -------------------------------------- */

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

/* ---- its row of the table ---------------------------------------------- */

extern const struct family family_gatepay; /* src/family/family_gatepay.c */

START_TEST(test_gatepay_row)
{
	ck_assert_ptr_eq(family_find("gatepay"), &family_gatepay);
	ck_assert_str_eq(family_gatepay.name, "gatepay");
	ck_assert_str_eq(family_gatepay.ack_body, "success");
	/* the gateway client's bits apart (SPEC §10) */
	ck_assert_uint_eq(family_gatepay.caps &
		~(unsigned)(FAMILY_CREATE | FAMILY_REFUND | FAMILY_RETURN),
	    FAMILY_CONFIRM_DEFAULT);
	/* the payer's return (SPEC §10.2) */
	ck_assert(family_gatepay.caps & FAMILY_RETURN);
	ck_assert(family_returns(&family_gatepay));
	ck_assert_str_eq(family_gatepay.return_order_field, "out_order_id");
	ck_assert(family_gatepay.verify_return != NULL &&
	    family_gatepay.verify_return != family_gatepay.verify);
	/* payment creation (SPEC §10.1) */
	ck_assert(family_gatepay.caps & FAMILY_CREATE);
	ck_assert(family_gatepay.create_request != NULL && family_gatepay.create_parse != NULL);
	ck_assert(family_gatepay.create_redirect == NULL); /* no payment page */
	ck_assert_str_eq(family_gatepay.trade_id_field, "order_id");
	ck_assert(family_gatepay.verify != NULL);
	ck_assert(family_sweeps(&family_gatepay) == false);
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

/* ---- polls: the query and every kind of answer ---------------------------- */

#define GATEPAY_APPKEY "098f6bcd4621d373cade4e832627b4f6"
#define GATEPAY_SECRET "5ebe2294ecd0e0f08eab7690d2a6ee69"

static void
gatepay_chan(struct channel *ch)
{
	poll_chan_init(ch, "shop-gatepay", "gatepay", GATEPAY_APPKEY, GATEPAY_SECRET);
}

START_TEST(test_gatepay_query)
{
	json_t *root = vectors_load("gatepay.json");
	json_t *vec = json_object_get(root, "order_check");
	struct channel ch;
	struct poll_query q;
	char want[512];

	ck_assert_msg(json_is_object(vec), "gatepay.json has no order_check");
	poll_chan_init(&ch, "shop-gatepay", "gatepay", vectors_str(vec, "appkey"),
	    vectors_str(vec, "appsecret"));
	ck_assert_int_eq(ch.family->poll_query(&ch, vectors_str(vec, "out_order_id"), &q), 0);
	ck_assert_str_eq(q.method, "GET");
	snprintf(want, sizeof(want), "%s/api/order/check?appkey=%s&out_order_id=%s&sign=%s",
	    POLL_API, vectors_str(vec, "appkey"), vectors_str(vec, "out_order_id"),
	    vectors_str(vec, "sign"));
	ck_assert_str_eq(q.url, want);
	ck_assert_ptr_null(q.body);
	ck_assert_ptr_null(strstr(q.url, ch.key));
	poll_query_free(&q);
	chan_free(&ch);
	json_decref(root);
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

		poll_chan_init(&ch, "shop-gatepay", "gatepay", vectors_str(vec, "appkey"),
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

/* ---- the payer's return (同步通知, SPEC §10.2) ----------------------------- */

/* gatepay-001.md: sign = md5(md5(appkey + price + type + product_id +
 * order_id + out_order_id) + appsecret), written here from the document. */
static void
gatepay_return_sign(const struct params *p, const char *appkey, const char *appsecret, char out[33])
{
	static const char *const order[] = { "price", "type", "product_id", "order_id",
		"out_order_id" };
	char inner[33], buf[1024];
	size_t i;

	snprintf(buf, sizeof(buf), "%s", appkey);
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *v = params_value(p, order[i]);

		if (v != NULL)
			strncat(buf, v, sizeof(buf) - strlen(buf) - 1);
	}
	ck_assert_int_eq(crypto_md5_hex(buf, strlen(buf), inner), 0);
	md5_concat(inner, 32, appsecret, out);
}

/* A genuine return of vector 0's merchant: order 522, out_order_id R-522. */
static void
gr_init(struct gp_case *c)
{
	char sign[33];

	c->root = vectors_load("gatepay.json");
	c->vec = json_array_get(vectors_array(c->root, "vectors"), 0);
	c->appkey = vectors_str(c->vec, "appkey");
	c->secret = vectors_str(c->vec, "appsecret");
	chan_init(&c->ch, "shop-gatepay", "gatepay", SIGN_MD5, c->appkey, c->secret);
	params_init(&c->p);
	pset(&c->p, "price", "1.88");
	pset(&c->p, "type", "alipay");
	pset(&c->p, "product_id", "");
	pset(&c->p, "order_id", "522");
	pset(&c->p, "out_order_id", "R-522");
	gatepay_return_sign(&c->p, c->appkey, c->secret, sign);
	pset(&c->p, "sign", sign);
}

static void
gr_resign(struct gp_case *c)
{
	char sign[33];

	gatepay_return_sign(&c->p, c->appkey, c->secret, sign);
	pset(&c->p, "sign", sign);
}

static enum verdict
run_return(const struct channel *ch, const struct params *p, struct event *ev)
{
	memset(ev, 0, sizeof(*ev));
	return ch->family->verify_return(ch, p, time(NULL), ev);
}

static void
expect_return(const struct gp_case *c, enum verdict want, const char *what)
{
	struct event ev;
	enum verdict got = run_return(&c->ch, &c->p, &ev);

	ck_assert_msg(got == want, "%s: verdict %s, want %s", what, verdict_str(got),
	    verdict_str(want));
}

START_TEST(test_gatepay_return_ok)
{
	struct gp_case c;
	struct event ev;
	char id[EVENT_ID_LEN + 1];
	enum verdict got;

	gr_init(&c);
	pset(&c.p, "product_id", "8"); /* stablepay: a product id, signed */
	gr_resign(&c);
	pset(&c.p, "extend", "uid=7"); /* not in the return's formula */
	got = run_return(&c.ch, &c.p, &ev);
	ck_assert_msg(got == VERDICT_OK, "genuine return: %s", verdict_str(got));
	ck_assert_str_eq(ev.family, "gatepay");
	ck_assert_str_eq(ev.trade_no, "522");
	ck_assert_str_eq(ev.out_trade_no, "R-522");
	ck_assert_str_eq(ev.status, "paid");
	ck_assert_int_eq(ev.type, EVENT_PAID);
	ck_assert_str_eq(ev.amount, "1.88");
	ck_assert_int_eq(ev.amount_fen, 188);
	/* no realprice in a return: what was paid is the price */
	ck_assert_str_eq(ev.paid_amount, "1.88");
	ck_assert_int_eq(ev.paid_amount_fen, 188);
	ck_assert_str_eq(ev.method, "alipay");
	ck_assert_ptr_null(ev.passthrough);
	/* the notify's id: the later notify is a duplicate */
	ck_assert_int_eq(event_make_id(id, "shop-gatepay", "522", "paid"), 0);
	ck_assert_str_eq(ev.id, id);
	/* extend is outside the formula: unsigned */
	ck_assert(ev.unsigned_mask & ((uint64_t)1 << (params_get(&c.p, "extend") - c.p.v)));
	ck_assert(!(ev.unsigned_mask & ((uint64_t)1 << (params_get(&c.p, "order_id") - c.p.v))));
	/* the same appkey as the channel's is fine */
	pset(&c.p, "appkey", c.appkey);
	expect_return(&c, VERDICT_OK, "appkey = merchant_id");
	pset(&c.p, "appkey", "00000000000000000000000000000000");
	expect_return(&c, VERDICT_WRONG_MERCHANT, "another appkey");
	gp_case_free(&c);
}
END_TEST

/* The notify and the return of one payment have the same event id. */
START_TEST(test_gatepay_return_same_id_as_notify)
{
	struct gp_case n, r;
	struct event evn, evr;

	gp_case_init(&n, 0, NULL);
	ck_assert_int_eq(run(&n.ch, &n.p, time(NULL), &evn), VERDICT_OK);
	gr_init(&r);
	pset(&r.p, "order_id", params_value(&n.p, "order_id"));
	pset(&r.p, "out_order_id", params_value(&n.p, "out_order_id"));
	pset(&r.p, "price", params_value(&n.p, "price"));
	gr_resign(&r);
	ck_assert_int_eq(run_return(&r.ch, &r.p, &evr), VERDICT_OK);
	ck_assert_str_eq(evr.id, evn.id);
	gp_case_free(&n);
	gp_case_free(&r);
}
END_TEST

START_TEST(test_gatepay_return_altered)
{
	static const char *const fields[] = { "price", "type", "product_id", "order_id",
		"out_order_id" };
	static const char *const values[] = { "2.88", "wechat", "9", "523", "R-523" };
	struct gp_case c;
	char sign[33];
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		char what[64];

		snprintf(what, sizeof(what), "%s altered", fields[i]);
		gr_init(&c);
		pset(&c.p, fields[i], values[i]);
		expect_return(&c, VERDICT_BAD_SIGNATURE, what);
		gp_case_free(&c);
	}
	/* a sign digit, and another appsecret */
	gr_init(&c);
	snprintf(sign, sizeof(sign), "%s", params_value(&c.p, "sign"));
	flip_hex_digit(sign, 3);
	pset(&c.p, "sign", sign);
	expect_return(&c, VERDICT_BAD_SIGNATURE, "sign digit changed");
	gp_case_free(&c);
	gr_init(&c);
	chan_set(&c.ch.key, "5ebe2294ecd0e0f08eab7690d2a6ee6a");
	c.ch.key_len = strlen(c.ch.key);
	expect_return(&c, VERDICT_BAD_SIGNATURE, "appsecret differs");
	gp_case_free(&c);
	/* the notify's formula is not the return's: a notify's sign over
	 * the same values does not make a return */
	gr_init(&c);
	pset(&c.p, "realprice", "1.88");
	gatepay_md5_sign(&c.p, c.appkey, c.secret, sign);
	pset(&c.p, "sign", sign);
	expect_return(&c, VERDICT_BAD_SIGNATURE, "signed as a notify");
	gp_case_free(&c);
	/* and a return's sign does not make a notify */
	gr_init(&c);
	pset(&c.p, "realprice", "1.88");
	expect(&c.ch, &c.p, time(NULL), VERDICT_BAD_SIGNATURE, "a return sent as a notify");
	gp_case_free(&c);
}
END_TEST

START_TEST(test_gatepay_return_refused)
{
	static const char *const required[] = { "order_id", "out_order_id", "price" };
	struct gp_case c;
	size_t i;

	gr_init(&c);
	pset(&c.p, "sign", "");
	expect_return(&c, VERDICT_MISSING_FIELD, "empty sign");
	gp_case_free(&c);
	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		char what[64];

		snprintf(what, sizeof(what), "empty %s, re-signed", required[i]);
		gr_init(&c);
		pset(&c.p, required[i], "");
		gr_resign(&c);
		expect_return(&c, VERDICT_MISSING_FIELD, what);
		gp_case_free(&c);
	}
	/* amounts: exact fen, canonical */
	gr_init(&c);
	pset(&c.p, "price", "1.001");
	gr_resign(&c);
	expect_return(&c, VERDICT_BAD_AMOUNT, "price 1.001");
	gp_case_free(&c);
	gr_init(&c);
	pset(&c.p, "price", "01.88");
	gr_resign(&c);
	expect_return(&c, VERDICT_BAD_AMOUNT, "price 01.88");
	gp_case_free(&c);
	/* ids: canonical (SPEC §2.5) */
	gr_init(&c);
	pset(&c.p, "out_order_id", "R 522");
	gr_resign(&c);
	expect_return(&c, VERDICT_NOT_CANONICAL, "out_order_id with a space");
	gp_case_free(&c);
	/* where price ends is not signed: "1.8" + "8alipay" reads as
	 * "1.88" + "alipay", so a type that continues a decimal is refused */
	gr_init(&c);
	pset(&c.p, "price", "1.8");
	pset(&c.p, "type", "8alipay");
	expect_return(&c, VERDICT_AMBIGUOUS, "price re-cut into type (genuine sign)");
	gp_case_free(&c);
	gr_init(&c);
	pset(&c.p, "type", "");
	pset(&c.p, "product_id", "0");
	gr_resign(&c);
	expect_return(&c, VERDICT_AMBIGUOUS, "no type, a product_id that continues price");
	gp_case_free(&c);
}
END_TEST

/* What only confirmation by query closes: digits move between product_id,
 * order_id and out_order_id under one signature. The event then names
 * another trade id and order, which the query compares (SPEC §2.5). */
START_TEST(test_gatepay_return_recut_needs_confirmation)
{
	struct gp_case c;
	struct event ev;

	gr_init(&c);
	pset(&c.p, "product_id", "8");
	pset(&c.p, "out_order_id", "1000");
	gr_resign(&c);
	ck_assert_int_eq(run_return(&c.ch, &c.p, &ev), VERDICT_OK);
	/* "8" "522" "1000" re-cut as "" "8522" "1000" and "85" "2210" "00" */
	pset(&c.p, "product_id", "");
	pset(&c.p, "order_id", "8522");
	ck_assert_int_eq(run_return(&c.ch, &c.p, &ev), VERDICT_OK);
	ck_assert_str_eq(ev.trade_no, "8522");
	pset(&c.p, "product_id", "85");
	pset(&c.p, "order_id", "2210");
	pset(&c.p, "out_order_id", "00");
	ck_assert_int_eq(run_return(&c.ch, &c.p, &ev), VERDICT_OK);
	ck_assert_str_eq(ev.out_trade_no, "00");
	/* the amount cannot move: it follows the appkey and ends at type */
	ck_assert_int_eq(ev.amount_fen, 188);
	gp_case_free(&c);
}
END_TEST

/* ---- creating a payment (SPEC §10.1) ------------------------------------ */

/* md5(md5(appkey + x + type + out_order_id + custom) + appsecret), from the
 * gateway's document. */
static void
gatepay_create_sign(const char *appkey, const char *x, const char *type, const char *oid,
    const char *custom, const char *secret, char out[33])
{
	char buf[1024], inner[33];

	snprintf(buf, sizeof(buf), "%s%s%s%s%s", appkey, x, type, oid, custom);
	ck_assert_int_eq(crypto_md5_hex(buf, strlen(buf), inner), 0);
	md5_concat(inner, 32, secret, out);
}

START_TEST(test_gatepay_create_request)
{
	static const struct {
		const char *product_id, *fields, *path, *xname, *x;
	} cases[] = {
		{ NULL, NULL, "https://gw.example/api/anypay/create", "price", "1.88" },
		{ "8", NULL, "https://gw.example/api/stablepay/create", "product_id", "8" },
		{ NULL, "8:2,7:1", "https://gw.example/api/grouppay/create", "fields", "8:2,7:1" },
	};
	struct channel ch;
	struct pay_request pr;
	struct poll_query q;
	struct params p;
	const char *why;
	char want[33];
	size_t i;

	chan_init(&ch, "shop", "gatepay", SIGN_MD5, "APPKEY01", "S3cretS3cret");
	chan_set(&ch.api_base, "https://gw.example");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pay_request_init(&pr, "ORD-G", "1.88");
		pr.method = "wechat";
		pr.param = "用户=7&x";
		pr.subject = "not sent";
		pr.product_id = cases[i].product_id;
		pr.fields = cases[i].fields;
		ck_assert_int_eq(family_gatepay.create_request(&ch, &pr, &q, &why), 0);
		ck_assert_str_eq(q.method, "POST");
		ck_assert_str_eq(q.url, cases[i].path);
		form_params(&p, q.body);
		ck_assert_str_eq(params_value(&p, "appkey"), "APPKEY01");
		ck_assert_str_eq(params_value(&p, cases[i].xname), cases[i].x);
		if (i > 0)
			ck_assert_ptr_null(params_value(&p, "price")); /* the product's price */
		ck_assert_str_eq(params_value(&p, "type"), "wechat");
		ck_assert_str_eq(params_value(&p, "out_order_id"), "ORD-G");
		ck_assert_str_eq(params_value(&p, "custom"), "用户=7&x");
		ck_assert_str_eq(params_value(&p, "notify_url"),
		    "https://relay.example/notify/shop");
		ck_assert_str_eq(params_value(&p, "return_url"),
		    "https://relay.example/return/shop");
		gatepay_create_sign("APPKEY01", cases[i].x, "wechat", "ORD-G", "用户=7&x",
		    "S3cretS3cret", want);
		ck_assert_str_eq(params_value(&p, "sign"), want);
		ck_assert(strstr(q.body, "S3cret") == NULL);
		params_free(&p);
		poll_query_free(&q);
	}
	/* no custom: signed as "" */
	pay_request_init(&pr, "ORD-H", "2.00");
	pr.method = "alipay";
	ck_assert_int_eq(family_gatepay.create_request(&ch, &pr, &q, &why), 0);
	form_params(&p, q.body);
	ck_assert_str_eq(params_value(&p, "custom"), "");
	gatepay_create_sign("APPKEY01", "2.00", "alipay", "ORD-H", "", "S3cretS3cret", want);
	ck_assert_str_eq(params_value(&p, "sign"), want);
	params_free(&p);
	poll_query_free(&q);
	/* what cannot be made */
	pr.product_id = "8";
	pr.fields = "8:1";
	ck_assert_int_eq(family_gatepay.create_request(&ch, &pr, &q, &why), -1);
	ck_assert_ptr_nonnull(why);
	pr.product_id = pr.fields = NULL;
	pr.method = NULL;
	ck_assert_int_eq(family_gatepay.create_request(&ch, &pr, &q, &why), -1);
	ck_assert_ptr_nonnull(why);
	pr.method = "alipay";
	pr.amount = NULL;
	ck_assert_int_eq(family_gatepay.create_request(&ch, &pr, &q, &why), -1);
	ck_assert_ptr_nonnull(why);
	chan_free(&ch);
}
END_TEST

static void
gatepay_parse(const char *body, struct pay_result *r)
{
	struct channel ch;

	chan_init(&ch, "shop", "gatepay", SIGN_MD5, "APPKEY01", "S3cretS3cret");
	memset(r, 0, sizeof(*r));
	family_gatepay.create_parse(&ch, body, strlen(body), r);
	chan_free(&ch);
}

START_TEST(test_gatepay_create_parse)
{
	struct pay_result r;

	/* the document's own example */
	gatepay_parse("{\"code\":100,\"msg\":\"请求成功\",\"time\":\"1556614084\",\"data\":{"
		      "\"pay_url\":\"https:\\/\\/gatepay.io\\/pay\\/"
		      "api?id=5cc75a6a0b418&type=wechat\","
		      "\"qrcode_url\":\"https:\\/\\/gatepay.io\\/qrcode\\/"
		      "build\",\"qrcode_body\":\"\","
		      "\"params\":{\"appkey\":\"x\"}}}",
	    &r);
	ck_assert(r.ok);
	ck_assert_int_eq(r.kind, PAY_URL);
	ck_assert_str_eq(r.url, "https://gatepay.io/pay/api?id=5cc75a6a0b418&type=wechat");
	ck_assert_ptr_null(r.trade_no); /* the create answer names none */
	pay_result_free(&r);
	gatepay_parse("{\"code\":104,\"msg\":\"无效的签名\",\"time\":\"1\",\"data\":[]}", &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.code, "104");
	ck_assert_str_eq(r.msg, "无效的签名");
	pay_result_free(&r);
	gatepay_parse("{\"code\":100,\"msg\":\"ok\",\"data\":{}}", &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.code, "");
	pay_result_free(&r);
	gatepay_parse("[1,2]", &r);
	ck_assert(!r.ok);
	pay_result_free(&r);
}
END_TEST

/* The appsecret echoed across the cut of msg is masked before the cut
 * (found by fuzz/fuzz_client.c). */
START_TEST(test_gatepay_create_parse_masks_before_cut)
{
	char body[600], filler[246];
	struct pay_result r;

	memset(filler, 'x', sizeof(filler) - 1);
	filler[sizeof(filler) - 1] = '\0';
	snprintf(body, sizeof(body), "{\"code\":199,\"msg\":\"%sS3cretS3cret\",\"data\":[]}",
	    filler);
	gatepay_parse(body, &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.code, "199");
	ck_assert_ptr_null(strstr(r.msg, "S3c"));
	ck_assert_ptr_nonnull(strstr(r.msg, "***"));
	pay_result_free(&r);
}
END_TEST

static Suite *
family_gatepay_suite(void)
{
	Suite *s = suite_create("family_gatepay");
	TCase *tc;

	tc = tcase_create("gatepay");
	tcase_add_test(tc, test_gatepay_row);
	tcase_add_test(tc, test_gatepay_vectors);
	tcase_add_test(tc, test_gatepay_sign_altered);
	tcase_add_test(tc, test_gatepay_signed_fields_altered);
	tcase_add_test(tc, test_gatepay_appkey);
	tcase_add_test(tc, test_gatepay_missing);
	tcase_add_test(tc, test_gatepay_bad_amount);
	tcase_add_test(tc, test_gatepay_resigned_ok);
	tcase_add_test(tc, test_gatepay_return_ok);
	tcase_add_test(tc, test_gatepay_return_same_id_as_notify);
	tcase_add_test(tc, test_gatepay_return_altered);
	tcase_add_test(tc, test_gatepay_return_refused);
	tcase_add_test(tc, test_gatepay_return_recut_needs_confirmation);
	suite_add_tcase(s, tc);

	tc = tcase_create("poll");
	tcase_add_test(tc, test_gatepay_query);
	tcase_add_test(tc, test_gatepay_paid_ids_match_callbacks);
	tcase_add_test(tc, test_gatepay_states);
	tcase_add_test(tc, test_gatepay_detail_hides_key);
	tcase_add_test(tc, test_gatepay_create_request);
	tcase_add_test(tc, test_gatepay_create_parse);
	tcase_add_test(tc, test_gatepay_create_parse_masks_before_cut);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(family_gatepay_suite());
}
