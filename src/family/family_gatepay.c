/* gatepay (SPEC §2.2): sign = md5(md5(appkey order_id out_order_id price
 * realprice type paytime extend) appsecret), a notify means paid. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "crypto.h"
#include "family.h"
#include "log.h"
#include "testcb.h"

/* Defined at the end of the file; its verify names events by it. */
extern const struct family family_gatepay;

/* The fields the signature concatenates after appkey, in its order. */
static const char *const gatepay_signed_fields[] = { "order_id", "out_order_id", "price",
	"realprice", "type", "paytime", "extend", NULL };
/* The same for the return (同步通知, gatepay-001.md, which misspells
 * product_id "prodcut_id" in its formula; SPEC §10.2). */
static const char *const gatepay_return_fields[] = { "price", "type", "product_id", "order_id",
	"out_order_id", NULL };

/* Bit i set: p->v[i] is not one of the concatenated `fields` (nor an
 * appkey equal to the channel's, which the signature covers through the
 * key). */
static uint64_t
gatepay_unsigned_mask(const struct params *p, const char *const *fields)
{
	const char *const *f;
	uint64_t m = 0;
	size_t i;
	bool covered;

	for (i = 0; i < p->n && i < 64; i++) {
		covered = strcmp(p->v[i].name, "appkey") == 0;
		for (f = fields; *f != NULL && !covered; f++)
			covered = strcmp(p->v[i].name, *f) == 0;
		if (!covered)
			m |= (uint64_t)1 << i;
	}
	return m;
}

/* A plain concatenation does not say where an amount ends: with "1.88"
 * followed by "8alipay", "1.888" and "alipay" read the same. The byte
 * after the amount (the first of the fields `after` it that is not empty)
 * must not continue a decimal. For a notify the amount is realprice; for
 * a return, price. The boundaries between the ids are fixed only by
 * confirmation (SPEC §2.5): see docs/guarantees.md. */
static bool
gatepay_amount_ends(const struct params *p, const char *const *after)
{
	const char *const *f;
	const char *v;

	for (f = after; *f != NULL; f++) {
		if ((v = params_value(p, *f)) == NULL || *v == '\0')
			continue;
		return !((*v >= '0' && *v <= '9') || *v == '.');
	}
	return true;
}

/* Every gatepay signature (notify, return, query, create) is
 * md5(md5(appkey + values) + appsecret). `s` holds appkey + values; it is
 * used as scratch, wiped (it ends holding the key) and freed. Returns 0,
 * or -1 when out of memory or the crypto library failed (fail closed). */
static int
gatepay_seal(const struct channel *ch, struct sbuf *s, char out[33])
{
	char inner[33];
	int rc = -1;

	if (crypto_md5_hex(s->p, s->len, inner) == -1)
		goto out;
	sbuf_reset(s);
	if (sbuf_add(s, inner, 32) == -1 || sbuf_add(s, ch->key, ch->key_len) == -1 ||
	    crypto_md5_hex(s->p, s->len, out) == -1)
		goto out;
	rc = 0;
out:
	if (s->p != NULL)
		explicit_bzero(s->p, s->len);
	sbuf_free(s);
	return rc;
}

/* md5(md5(appkey, then the values of `fields`) appsecret), the appkey
 * being the channel's merchant id. */
static int
gatepay_md5(const struct channel *ch, const struct params *p, const char *const *fields,
    char out[33])
{
	const char *const *f;
	struct sbuf s;

	sbuf_init(&s);
	if (sbuf_adds(&s, ch->merchant_id) == -1)
		goto fail;
	for (f = fields; *f != NULL; f++) {
		const struct param *pa = params_get(p, *f);

		if (pa != NULL && sbuf_add(&s, pa->value, pa->vlen) == -1)
			goto fail;
	}
	return gatepay_seal(ch, &s, out);
fail:
	sbuf_free(&s);
	return -1;
}

/* md5(md5(appkey order_id out_order_id price realprice type paytime
 * extend) appsecret): the notify's signature. */
static int
gatepay_sign(const struct channel *ch, const struct params *p, char out[33])
{
	return gatepay_md5(ch, p, gatepay_signed_fields, out);
}

static enum verdict
gatepay_verify(const struct channel *ch, const struct params *p, time_t now, struct event *ev)
{
	static const char *const ids[] = { "order_id", "out_order_id", NULL };
	static const char *const amounts[] = { "price", "realprice", NULL };
	static const char *const after_realprice[] = { "type", "paytime", "extend", NULL };
	const char *appkey, *sign;
	char want[33];
	uint64_t mask;
	enum verdict v;

	(void)now;
	if ((v = family_check_params(p)) != VERDICT_OK)
		return v;
	mask = gatepay_unsigned_mask(p, gatepay_signed_fields);
	sign = params_value(p, "sign");
	if (sign == NULL || *sign == '\0')
		return VERDICT_MISSING_FIELD;
	if ((v = family_require(p, mask, ids, amounts)) != VERDICT_OK)
		return v;
	appkey = params_value(p, "appkey");
	if (appkey != NULL && strcmp(appkey, ch->merchant_id) != 0)
		return VERDICT_WRONG_MERCHANT;
	if (!gatepay_amount_ends(p, after_realprice))
		return VERDICT_AMBIGUOUS; /* where realprice ends is not signed */

	if (gatepay_sign(ch, p, want) == -1)
		return VERDICT_CRYPTO;
	if (!family_hex_equal(want, sign))
		return VERDICT_BAD_SIGNATURE;

	if (family_amount(params_value(p, "price"), &ev->amount_fen) == -1 ||
	    family_amount(params_value(p, "realprice"), &ev->paid_amount_fen) == -1)
		return VERDICT_BAD_AMOUNT;

	ev->family = family_gatepay.name;
	ev->trade_no = params_value(p, "order_id");
	ev->out_trade_no = params_value(p, "out_order_id");
	ev->type = EVENT_PAID;
	ev->status = "paid";
	ev->amount = params_value(p, "price");
	ev->paid_amount = params_value(p, "realprice");
	ev->method = family_signed(p, mask, "type");
	ev->subject = NULL;
	family_passthrough(p, mask, "extend", ev);
	ev->gateway_time = family_signed(p, mask, "paytime");
	ev->unsigned_mask = mask;
	return family_finish(ch, p, ev) == 0 ? VERDICT_OK : VERDICT_CRYPTO;
}

/* The payer's return (同步通知, SPEC §10.2): price type product_id
 * order_id out_order_id sign, sign = md5(md5(appkey price type product_id
 * order_id out_order_id) appsecret), sent only for a paid order. What a
 * payer holding one genuine return can re-cut: digits between product_id,
 * order_id and out_order_id (all may be digits), so the trade id and the
 * order id it names are proven only by confirmation by query, which
 * compares both and the amount (SPEC §2.5). The amount is fixed here:
 * after the channel's appkey, and ending where a non-decimal byte starts
 * (type). No realprice: what was paid is the price, as the query says. */
static enum verdict
gatepay_verify_return(const struct channel *ch, const struct params *p, time_t now,
    struct event *ev)
{
	static const char *const ids[] = { "order_id", "out_order_id", NULL };
	static const char *const amounts[] = { "price", NULL };
	static const char *const after_price[] = { "type", "product_id", "order_id", "out_order_id",
		NULL };
	const char *appkey, *sign;
	char want[33];
	uint64_t mask;
	enum verdict v;

	(void)now;
	if ((v = family_check_params(p)) != VERDICT_OK)
		return v;
	mask = gatepay_unsigned_mask(p, gatepay_return_fields);
	sign = params_value(p, "sign");
	if (sign == NULL || *sign == '\0')
		return VERDICT_MISSING_FIELD;
	if ((v = family_require(p, mask, ids, amounts)) != VERDICT_OK)
		return v;
	appkey = params_value(p, "appkey");
	if (appkey != NULL && strcmp(appkey, ch->merchant_id) != 0)
		return VERDICT_WRONG_MERCHANT;
	if (!gatepay_amount_ends(p, after_price))
		return VERDICT_AMBIGUOUS; /* where price ends is not signed */

	if (gatepay_md5(ch, p, gatepay_return_fields, want) == -1)
		return VERDICT_CRYPTO;
	if (!family_hex_equal(want, sign))
		return VERDICT_BAD_SIGNATURE;
	if (family_amount(params_value(p, "price"), &ev->amount_fen) == -1)
		return VERDICT_BAD_AMOUNT;

	ev->family = family_gatepay.name;
	ev->trade_no = params_value(p, "order_id");
	ev->out_trade_no = params_value(p, "out_order_id");
	ev->type = EVENT_PAID;
	ev->status = "paid";
	ev->amount = params_value(p, "price");
	ev->paid_amount = ev->amount;
	ev->paid_amount_fen = ev->amount_fen;
	ev->method = family_signed(p, mask, "type");
	ev->subject = NULL;
	ev->passthrough = NULL;
	ev->passthrough_unsigned = false;
	ev->gateway_time = NULL;
	ev->unsigned_mask = mask;
	return family_finish(ch, p, ev) == 0 ? VERDICT_OK : VERDICT_CRYPTO;
}

/* ---- polling (SPEC §2.2) --------------------------------------------- */

/* GET {api_base}/api/order/check?appkey=..&out_order_id=..&sign=
 * md5(md5(appkey out_order_id) appsecret). */
static int
gatepay_poll_query(const struct channel *ch, const char *out_trade_no, struct poll_query *q)
{
	char sign[33];
	struct sbuf s, qs;
	int rc = -1;

	memset(q, 0, sizeof(*q));
	sbuf_init(&s);
	sbuf_init(&qs);
	if (sbuf_adds(&s, ch->merchant_id) == -1 || sbuf_adds(&s, out_trade_no) == -1 ||
	    gatepay_seal(ch, &s, sign) == -1) /* s is empty again */
		goto out;
	if (family_form_add(&qs, "appkey", ch->merchant_id) == -1 ||
	    family_form_add(&qs, "out_order_id", out_trade_no) == -1 ||
	    family_form_add(&qs, "sign", sign) == -1 ||
	    sbuf_printf(&s, "%s/api/order/check?%s", ch->api_base, qs.p) == -1)
		goto out;
	q->method = "GET";
	q->url = sbuf_steal(&s);
	rc = q->url == NULL ? -1 : 0;
out:
	if (s.p != NULL)
		explicit_bzero(s.p, s.len);
	sbuf_free(&s);
	sbuf_free(&qs);
	return rc;
}

/* order_status: PAID, UNPAID, or -1 for a status we do not know. */
static int
gatepay_order_status(const char *status)
{
	static const char *const paid[] = { "paid", "success", NULL };
	static const char *const unpaid[] = { "", "unpaid", "notpay", "wait", "waiting", "pending",
		NULL };
	const char *const *s;

	for (s = paid; *s != NULL; s++)
		if (strcasecmp(status, *s) == 0)
			return POLL_PAID;
	for (s = unpaid; *s != NULL; s++)
		if (strcasecmp(status, *s) == 0)
			return POLL_UNPAID;
	return -1;
}

static void
gatepay_poll_parse(const struct channel *ch, const char *out_trade_no, const char *body, size_t len,
    struct poll_answer *a)
{
	const struct params *r = &a->raw;
	struct event *ev = &a->ev;
	const char *code, *msg, *status, *order_id, *price;
	json_t *root, *data;
	int64_t fen;
	int st;

	if ((root = poll_answer_json(a, body, len)) == NULL)
		return;
	/* raw: the envelope's scalars, then the order's (which win). */
	if (poll_answer_json_params(root, &a->raw) == -1) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has too many fields");
		goto out;
	}
	if ((code = params_value(r, "code")) == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has no code");
		goto out;
	}
	if (strcmp(code, "100") != 0) {
		msg = params_value(r, "msg");
		poll_answer_set(a, ch, POLL_UNKNOWN, "code %s: %s", code,
		    msg != NULL ? msg : "(no msg)");
		goto out;
	}
	data = json_object_get(root, "data");
	if (!json_is_object(data)) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has no data object");
		goto out;
	}
	if (poll_answer_json_params(data, &a->raw) == -1) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has too many fields");
		goto out;
	}
	if (poll_answer_order(a, params_value(r, "out_order_id"), out_trade_no) == -1)
		goto out;
	if ((status = params_value(r, "order_status")) == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has no order_status");
		goto out;
	}
	if ((st = gatepay_order_status(status)) == -1) {
		poll_answer_set(a, ch, POLL_ERROR, "unknown order_status \"%s\"", status);
		goto out;
	}
	if (st == POLL_UNPAID) {
		poll_answer_set(a, ch, POLL_UNPAID, "order_status \"%s\"", status);
		goto out;
	}

	order_id = params_value(r, "order_id");
	price = params_value(r, "order_price");
	if (order_id == NULL || *order_id == '\0') {
		poll_answer_set(a, NULL, POLL_ERROR, "paid answer has no order_id");
		goto out;
	}
	if (family_amount(price, &fen) == -1) {
		poll_answer_set(a, ch, POLL_ERROR, "malformed order_price \"%s\"",
		    price ? price : "");
		goto out;
	}
	if ((ev->out_trade_no = poll_answer_out_trade_no(a, params_value(r, "out_order_id"),
		 out_trade_no)) == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "out of memory");
		goto out;
	}
	/* The query tells no realprice: what was paid is the order's price. */
	ev->source = SOURCE_POLL;
	ev->family = family_gatepay.name;
	ev->trade_no = order_id;
	ev->type = EVENT_PAID;
	ev->status = "paid";
	ev->amount = price;
	ev->amount_fen = fen;
	ev->paid_amount = price;
	ev->paid_amount_fen = fen;
	ev->method = params_value(r, "order_type");
	ev->subject = params_value(r, "order_name");
	ev->passthrough = params_value(r, "extend");
	ev->gateway_time = params_value(r, "paytime");
	if (family_finish(ch, r, ev) == -1) {
		poll_answer_set(a, NULL, POLL_ERROR, "the crypto library failed");
		goto out;
	}
	poll_answer_set(a, NULL, POLL_PAID, "paid");
out:
	json_decref(root);
}

/* The signature cannot be made unambiguous (SPEC §2.5): turning
 * confirmation off is allowed, but said at every load. */
static void
gatepay_config_warn(const struct channel *ch, const char *file, int confirm_line)
{
	if (!ch->confirm)
		log_warnx("confirm = off on a gatepay channel: a re-cut callback can "
			  "become a payment (SPEC 2.5)",
		    "file=\"%s\" line=%d channel=%s", file, confirm_line, ch->name);
}

/* The test callback (payrelayctl send-test). */
static int
gatepay_test_params(const struct channel *ch, const struct testcb_spec *t, struct params *p,
    const char **why)
{
	char when[32];
	int rc = 0;

	(void)ch;
	if (t->status != NULL) {
		*why = "gatepay notifies payments only: it has no status to send";
		return -1;
	}
	snprintf(when, sizeof(when), "%lld", (long long)t->now);
#define SET(n, v) (rc |= params_set(p, (n), (v), strlen(v)))
	SET("order_id", t->trade_no);
	SET("out_order_id", t->out_trade_no);
	SET("price", t->amount);
	SET("realprice", t->amount);
	SET("type", "alipay");
	SET("paytime", when);
	SET("extend", "payrelay-test");
#undef SET
	if (rc != 0)
		*why = "out of memory";
	return rc != 0 ? -1 : 0;
}

/* ---- creating a payment (SPEC §10.1) ----------------------------------- */

/* POST {api_base}/api/anypay/create (price), /api/stablepay/create
 * (product_id) or /api/grouppay/create (fields), each signed
 * md5(md5(appkey + X + type + out_order_id + custom) + appsecret) with X
 * the price, product_id or fields. The passthrough goes in `custom`
 * (the notify brings it back as `extend`); gatepay has no subject. */
static int
gatepay_create_request(const struct channel *ch, const struct pay_request *pr, struct poll_query *q,
    const char **why)
{
	const char *path, *xname, *x, *custom = pr->param != NULL ? pr->param : "";
	char sign[33];
	struct sbuf s, url, body;
	int rc = -1;

	memset(q, 0, sizeof(*q));
	*why = NULL;
	if (pr->product_id != NULL && pr->fields != NULL) {
		*why = "give product_id (stablepay) or fields (grouppay), not both";
		return -1;
	}
	if (pr->product_id != NULL) {
		path = "/api/stablepay/create";
		xname = "product_id";
		x = pr->product_id;
	} else if (pr->fields != NULL) {
		path = "/api/grouppay/create";
		xname = "fields";
		x = pr->fields;
	} else {
		path = "/api/anypay/create";
		xname = "price";
		x = pr->amount;
	}
	if (x == NULL || *x == '\0') {
		*why = "amount is required (or product_id, or fields)";
		return -1;
	}
	if (pr->method == NULL || *pr->method == '\0') {
		*why = "method is required: the gatepay type (wechat or alipay)";
		return -1;
	}
	sbuf_init(&s);
	sbuf_init(&url);
	sbuf_init(&body);
	if (sbuf_adds(&s, ch->merchant_id) == -1 || sbuf_adds(&s, x) == -1 ||
	    sbuf_adds(&s, pr->method) == -1 || sbuf_adds(&s, pr->out_trade_no) == -1 ||
	    sbuf_adds(&s, custom) == -1 || gatepay_seal(ch, &s, sign) == -1)
		goto out;
	if (family_form_add(&body, "appkey", ch->merchant_id) == -1 ||
	    family_form_add(&body, xname, x) == -1 ||
	    family_form_add(&body, "type", pr->method) == -1 ||
	    family_form_add(&body, "out_order_id", pr->out_trade_no) == -1 ||
	    family_form_add(&body, "custom", custom) == -1 ||
	    family_form_add(&body, "notify_url", pr->notify_url) == -1 ||
	    family_form_add(&body, "return_url", pr->return_url) == -1 ||
	    family_form_add(&body, "sign", sign) == -1 ||
	    sbuf_printf(&url, "%s%s", ch->api_base, path) == -1)
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
	/* md5(... + appsecret): the key was in s */
	if (s.p != NULL)
		explicit_bzero(s.p, s.len);
	sbuf_free(&s);
	sbuf_free(&url);
	sbuf_free(&body);
	return rc;
}

/* {"code":100,"msg":..,"data":{"pay_url","qrcode_url",...}}; any other code
 * is an error (101-110, 199, 201-209) with msg. The answer names no
 * gateway order id: the notify brings it. */
static void
gatepay_create_parse(const struct channel *ch, const char *body, size_t len, struct pay_result *r)
{
	struct params a, d;
	const char *code, *msg, *v;
	json_error_t jerr;
	json_t *root;

	params_init(&a);
	params_init(&d);
	root = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(root) || poll_answer_json_params(root, &a) == -1) {
		pay_result_error(r, "", "the answer is not a JSON object");
		goto out;
	}
	code = params_value(&a, "code");
	msg = params_value(&a, "msg");
	if (code == NULL || strcmp(code, "100") != 0) {
		pay_result_gateway(r, ch, code, msg);
		goto out;
	}
	if (poll_answer_json_params(json_object_get(root, "data"), &d) == -1 ||
	    (v = params_value(&d, "pay_url")) == NULL || *v == '\0') {
		pay_result_error(r, "", "code 100 without data.pay_url");
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
	params_free(&d);
	json_decref(root);
}

const struct family family_gatepay = {
	.name = "gatepay",
	.ack_body = "success",
	.caps = FAMILY_CONFIRM_DEFAULT | FAMILY_RETURN | FAMILY_CREATE,
	.trade_id_field = "order_id",
	.verify = gatepay_verify,
	.poll_query = gatepay_poll_query,
	.poll_parse = gatepay_poll_parse,
	.sign = gatepay_sign,
	.config_warn = gatepay_config_warn,
	.test_params = gatepay_test_params,
	.verify_return = gatepay_verify_return,
	.return_order_field = "out_order_id",
	/* SPEC §10.1 */
	.create_request = gatepay_create_request,
	.create_parse = gatepay_create_parse,
};
