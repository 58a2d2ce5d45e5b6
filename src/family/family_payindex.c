/* 聚合支付 Pay_Index (SPEC §2.3): sorted k=v over the non-empty() fields but
 * sign and attach, "&key=KEY" appended, UPPERCASE md5. */
#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "crypto.h"
#include "family.h"
#include "testcb.h"

/* Defined at the end of the file; its verify names events by it. */
extern const struct family family_payindex;

static const char *const payindex_unsigned[] = { "sign", "attach", NULL };

/* The md5 (lower case hex, as family_hex_equal wants it; the gateway
 * writes it in upper case) of the sorted non-empty() fields of `p` but
 * sign and attach, with "&key=KEY" appended: what callbacks, queries and
 * answers are signed with. Returns 0 or -1. */
static int
payindex_sign(const struct channel *ch, const struct params *p, char out[33])
{
	struct sbuf s;
	int rc = -1;

	sbuf_init(&s);
	if (family_sign_string(p, payindex_unsigned, SKIP_EMPTY | SKIP_ZERO, &s) == -1 ||
	    sbuf_adds(&s, "&key=") == -1 || sbuf_add(&s, ch->key, ch->key_len) == -1 ||
	    crypto_md5_hex(s.p, s.len, out) == -1)
		goto out;
	rc = 0;
out:
	if (s.p != NULL)
		explicit_bzero(s.p, s.len);
	sbuf_free(&s);
	return rc;
}

static enum verdict
payindex_verify(const struct channel *ch, const struct params *p, time_t now, struct event *ev)
{
	/* What names the payment (SPEC §2.5). A value PHP's empty() drops
	 * ("" or "0") is not signed, so it counts as missing. */
	static const char *const ids[] = { "memberid", "orderid", "transaction_id", "returncode",
		NULL };
	static const char *const amounts[] = { "amount", NULL };
	const char *code, *sign, *true_amount;
	char md5[33];
	uint64_t mask;
	enum verdict v;
	size_t i;

	(void)now;
	if ((v = family_check_params(p)) != VERDICT_OK)
		return v;
	mask = family_unsigned_mask(p, payindex_unsigned, SKIP_EMPTY | SKIP_ZERO);
	sign = params_value(p, "sign");
	if (sign == NULL || *sign == '\0')
		return VERDICT_MISSING_FIELD;
	if ((v = family_require(p, mask, ids, amounts)) != VERDICT_OK)
		return v;
	/* Every signed field is a number or an id (attach, the free text, is
	 * not signed): no signed value may hold '&', so the signed string has
	 * exactly one way to be cut (SPEC §2.5). */
	for (i = 0; i < p->n && i < 64; i++)
		if ((mask >> i & 1) == 0 && memchr(p->v[i].value, '&', p->v[i].vlen) != NULL)
			return VERDICT_AMBIGUOUS;
	/* true_amount is optional; unsigned ("", "0") it was not sent. */
	true_amount = family_signed(p, mask, "true_amount");
	if (true_amount != NULL && !family_canonical_amount(true_amount))
		return VERDICT_NOT_CANONICAL;
	if (strcmp(params_value(p, "memberid"), ch->merchant_id) != 0)
		return VERDICT_WRONG_MERCHANT;

	/* family_hex_equal compares in lower case: the gateway's upper case
	 * hex is folded, so either case verifies. */
	if (payindex_sign(ch, p, md5) == -1)
		return VERDICT_CRYPTO;
	if (!family_hex_equal(md5, sign))
		return VERDICT_BAD_SIGNATURE;

	if (true_amount == NULL)
		true_amount = params_value(p, "amount");
	if (family_amount(params_value(p, "amount"), &ev->amount_fen) == -1 ||
	    family_amount(true_amount, &ev->paid_amount_fen) == -1)
		return VERDICT_BAD_AMOUNT;

	code = params_value(p, "returncode");
	ev->family = family_payindex.name;
	ev->trade_no = params_value(p, "transaction_id");
	ev->out_trade_no = params_value(p, "orderid");
	if (strcmp(code, "00") == 0) {
		ev->type = EVENT_PAID;
		ev->status = "paid";
	} else {
		ev->type = EVENT_STATUS;
		ev->status = code;
	}
	ev->amount = params_value(p, "amount");
	ev->paid_amount = true_amount;
	ev->method = family_signed(p, mask, "bankcode");
	ev->subject = NULL;
	/* attach is never signed: kept, but marked so (SPEC §2.5). */
	family_passthrough(p, mask, "attach", ev);
	ev->gateway_time = family_signed(p, mask, "datetime");
	ev->unsigned_mask = mask;
	return family_finish(ch, p, ev) == 0 ? VERDICT_OK : VERDICT_CRYPTO;
}

/* As the gateway writes it: upper case. */
static int
payindex_sign_upper(const struct channel *ch, const struct params *p, char out[33])
{
	size_t i;

	if (payindex_sign(ch, p, out) == -1)
		return -1;
	for (i = 0; out[i] != '\0'; i++)
		out[i] = (char)toupper((unsigned char)out[i]);
	return 0;
}

/* ---- polling (SPEC §2.3) --------------------------------------------- */

/* POST {api_base}/Pay_Trade_query.html, pay_memberid, pay_orderid and
 * pay_md5sign (signed as a callback is). */
static int
payindex_poll_query(const struct channel *ch, const char *out_trade_no, struct poll_query *q)
{
	struct params p;
	struct sbuf url, body;
	char sign[33];
	int rc = -1;
	size_t i;

	memset(q, 0, sizeof(*q));
	params_init(&p);
	sbuf_init(&url);
	sbuf_init(&body);
	if (params_set(&p, "pay_memberid", ch->merchant_id, strlen(ch->merchant_id)) == -1 ||
	    params_set(&p, "pay_orderid", out_trade_no, strlen(out_trade_no)) == -1 ||
	    payindex_sign(ch, &p, sign) == -1)
		goto out;
	for (i = 0; sign[i] != '\0'; i++)
		sign[i] = (char)toupper((unsigned char)sign[i]);
	if (sbuf_printf(&url, "%s/Pay_Trade_query.html", ch->api_base) == -1 ||
	    family_form_add(&body, "pay_memberid", ch->merchant_id) == -1 ||
	    family_form_add(&body, "pay_orderid", out_trade_no) == -1 ||
	    family_form_add(&body, "pay_md5sign", sign) == -1)
		goto out;
	q->method = "POST";
	q->body_len = body.len;
	q->url = sbuf_steal(&url);
	q->body = sbuf_steal(&body);
	if (q->url == NULL || q->body == NULL) {
		poll_query_free(q);
		goto out;
	}
	rc = 0;
out:
	params_free(&p);
	sbuf_free(&url);
	sbuf_free(&body);
	return rc;
}

static void
payindex_poll_parse(const struct channel *ch, const char *out_trade_no, const char *body,
    size_t len, struct poll_answer *a)
{
	const struct params *r = &a->raw;
	struct event *ev = &a->ev;
	const char *status, *msg, *member, *state, *code, *trade_no, *amount, *true_amount;
	char want[33];
	json_t *root;

	if ((root = poll_answer_json(a, body, len)) == NULL)
		return;
	if (poll_answer_json_params(root, &a->raw) == -1) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has too many fields");
		goto out;
	}
	/* Errors come unsigned. */
	status = params_value(r, "status");
	if (status != NULL && strcmp(status, "error") == 0) {
		msg = params_value(r, "msg");
		poll_answer_set(a, ch, POLL_UNKNOWN, "error: %s", msg != NULL ? msg : "(no msg)");
		goto out;
	}
	if (payindex_sign(ch, r, want) == -1) {
		poll_answer_set(a, NULL, POLL_ERROR, "out of memory");
		goto out;
	}
	/* family_hex_equal folds `got` to lower case: upper case verifies. */
	if (!family_hex_equal(want, params_value(r, "sign"))) {
		poll_answer_set(a, NULL, POLL_ERROR, "bad signature");
		goto out;
	}
	member = params_value(r, "memberid");
	if (member != NULL && *member != '\0' && strcmp(member, ch->merchant_id) != 0) {
		poll_answer_set(a, ch, POLL_ERROR, "answer is for memberid %s", member);
		goto out;
	}
	if (poll_answer_order(a, params_value(r, "orderid"), out_trade_no) == -1)
		goto out;
	if ((state = params_value(r, "trade_state")) == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has no trade_state");
		goto out;
	}
	if (strcmp(state, "NOTPAY") == 0) {
		poll_answer_set(a, NULL, POLL_UNPAID, "unpaid");
		goto out;
	}
	if (strcmp(state, "SUCCESS") != 0) {
		poll_answer_set(a, ch, POLL_OTHER, "trade_state %s", state);
		goto out;
	}
	code = params_value(r, "returncode");
	if (code != NULL && strcmp(code, "00") != 0) {
		poll_answer_set(a, ch, POLL_ERROR, "trade_state SUCCESS with returncode %s", code);
		goto out;
	}

	trade_no = params_value(r, "transaction_id");
	amount = params_value(r, "amount");
	if (trade_no == NULL || *trade_no == '\0') {
		poll_answer_set(a, NULL, POLL_ERROR, "paid answer has no transaction_id");
		goto out;
	}
	/* true_amount that PHP's empty() drops ("" or "0") was not sent. */
	true_amount = params_value(r, "true_amount");
	if (true_amount == NULL || *true_amount == '\0' || strcmp(true_amount, "0") == 0)
		true_amount = amount;
	if (family_amount(amount, &ev->amount_fen) == -1 ||
	    family_amount(true_amount, &ev->paid_amount_fen) == -1) {
		poll_answer_set(a, ch, POLL_ERROR, "malformed amount \"%s\" or true_amount \"%s\"",
		    amount ? amount : "", true_amount ? true_amount : "");
		goto out;
	}
	if ((ev->out_trade_no = poll_answer_out_trade_no(a, params_value(r, "orderid"),
		 out_trade_no)) == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "out of memory");
		goto out;
	}
	ev->source = SOURCE_POLL;
	ev->family = family_payindex.name;
	ev->trade_no = trade_no;
	ev->type = EVENT_PAID;
	ev->status = "paid";
	ev->amount = amount;
	ev->paid_amount = true_amount;
	ev->method = params_value(r, "bankcode");
	ev->subject = NULL;
	ev->passthrough = params_value(r, "attach");
	ev->gateway_time = params_value(r, "time_end");
	if (family_finish(ch, r, ev) == -1) {
		poll_answer_set(a, NULL, POLL_ERROR, "the crypto library failed");
		goto out;
	}
	poll_answer_set(a, NULL, POLL_PAID, "paid");
out:
	json_decref(root);
}

/* The test callback (payrelayctl send-test). */
static int
payindex_test_params(const struct channel *ch, const struct testcb_spec *t, struct params *p,
    const char **why)
{
	char when[32];
	struct tm tm;
	int rc = 0;

	if (gmtime_r(&t->now, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y%m%d%H%M%S", &tm) == 0)
		when[0] = '\0';
#define SET(n, v) (rc |= params_set(p, (n), (v), strlen(v)))
	SET("memberid", ch->merchant_id);
	SET("orderid", t->out_trade_no);
	SET("amount", t->amount);
	SET("transaction_id", t->trade_no);
	SET("datetime", when);
	SET("returncode", t->status != NULL ? t->status : "00");
	SET("attach", "payrelay-test");
#undef SET
	if (rc != 0)
		*why = "out of memory";
	return rc != 0 ? -1 : 0;
}

/* ---- creating a payment (SPEC §10.1) ----------------------------------- */

/* POST {api_base}/Pay_Index.html with type=json: the seven pay_ fields
 * signed as a callback is (UPPERCASE md5), pay_productname and pay_attach
 * unsigned. pay_applydate is Beijing time, as the platforms' own demos
 * write it. */
static int
payindex_create_request(const struct channel *ch, const struct pay_request *pr,
    struct poll_query *q, const char **why)
{
	static const char *const order[] = { "pay_memberid", "pay_orderid", "pay_applydate",
		"pay_bankcode", "pay_notifyurl", "pay_callbackurl", "pay_amount", NULL };
	const char *name =
	    pr->subject != NULL && *pr->subject != '\0' ? pr->subject : pr->out_trade_no;
	const char *const *f;
	struct params p;
	struct sbuf url, body;
	char sign[33], when[32];
	time_t bj = pr->now + 8 * 3600;
	struct tm tm;
	int rc = -1;
	size_t i;

	memset(q, 0, sizeof(*q));
	*why = NULL;
	if (pr->product_id != NULL || pr->fields != NULL) {
		*why = "product_id and fields are gatepay's: a payindex payment has an amount";
		return -1;
	}
	if (pr->amount == NULL) {
		*why = "amount is required";
		return -1;
	}
	if (pr->method == NULL || *pr->method == '\0') {
		*why = "method is required: the payindex bank code (pay_bankcode, e.g. 903)";
		return -1;
	}
	if (gmtime_r(&bj, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm) == 0)
		return -1;
	params_init(&p);
	sbuf_init(&url);
	sbuf_init(&body);
#define SET(n, v) (params_set(&p, (n), (v), strlen(v)) == -1)
	if (SET("pay_memberid", ch->merchant_id) || SET("pay_orderid", pr->out_trade_no) ||
	    SET("pay_applydate", when) || SET("pay_bankcode", pr->method) ||
	    SET("pay_notifyurl", pr->notify_url) || SET("pay_callbackurl", pr->return_url) ||
	    SET("pay_amount", pr->amount))
		goto out;
#undef SET
	if (payindex_sign(ch, &p, sign) == -1)
		goto out;
	for (i = 0; sign[i] != '\0'; i++)
		sign[i] = (char)toupper((unsigned char)sign[i]);
	for (f = order; *f != NULL; f++)
		if (family_form_add(&body, *f, params_value(&p, *f)) == -1)
			goto out;
	if (family_form_add(&body, "pay_md5sign", sign) == -1 ||
	    family_form_add(&body, "pay_productname", name) == -1 ||
	    (pr->param != NULL && *pr->param != '\0' &&
		family_form_add(&body, "pay_attach", pr->param) == -1) ||
	    family_form_add(&body, "type", "json") == -1 ||
	    sbuf_printf(&url, "%s/Pay_Index.html", ch->api_base) == -1)
		goto out;
	q->method = "POST";
	q->body_len = body.len;
	q->url = sbuf_steal(&url);
	q->body = sbuf_steal(&body);
	if (q->url == NULL || q->body == NULL) {
		poll_query_free(q);
		goto out;
	}
	rc = 0;
out:
	params_free(&p);
	sbuf_free(&url);
	sbuf_free(&body);
	return rc;
}

/* {"status":"1","msg":..,"pay_amount","pay_orderid","payUrl"}, or
 * {"status":"error","msg":..}. The document's own success example spells
 * the member "ststus": both are read. */
static void
payindex_create_parse(const struct channel *ch, const char *body, size_t len, struct pay_result *r)
{
	struct params a;
	const char *status, *msg, *v;
	json_error_t jerr;
	json_t *root;

	params_init(&a);
	root = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(root) || poll_answer_json_params(root, &a) == -1) {
		pay_result_error(r, "", "the answer is not a JSON object");
		goto out;
	}
	if ((status = params_value(&a, "status")) == NULL)
		status = params_value(&a, "ststus");
	msg = params_value(&a, "msg");
	if (status == NULL || strcmp(status, "1") != 0) {
		pay_result_gateway(r, ch, status, msg);
		goto out;
	}
	if ((v = params_value(&a, "payUrl")) == NULL || *v == '\0') {
		pay_result_error(r, "", "status 1 without payUrl");
		goto out;
	}
	r->kind = PAY_URL;
	if ((r->url = strdup(v)) == NULL) {
		pay_result_error(r, "", "out of memory");
		goto out;
	}
	r->ok = true;
out:
	params_free(&a);
	json_decref(root);
}

const struct family family_payindex = {
	.name = "payindex",
	.ack_body = "OK",
	.caps = FAMILY_RETURN | FAMILY_CREATE,
	.trade_id_field = "transaction_id",
	.verify = payindex_verify,
	.poll_query = payindex_poll_query,
	.poll_parse = payindex_poll_parse,
	.sign = payindex_sign_upper,
	.test_params = payindex_test_params,
	/* pay_callbackurl gets the notify's fields and signature, POSTed by
	 * the payer's browser: verified as a callback is. */
	.verify_return = payindex_verify,
	.return_order_field = "orderid",
	/* SPEC §10.1 */
	.create_request = payindex_create_request,
	.create_parse = payindex_create_parse,
};
