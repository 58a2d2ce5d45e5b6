/* gatepay (SPEC §2.2): sign = md5(md5(appkey order_id out_order_id price
 * realprice type paytime extend) appsecret), a notify means paid. */
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "crypto.h"
#include "family.h"

static enum verdict
gatepay_verify(const struct channel *ch, const struct params *p, time_t now, struct event *ev)
{
	static const char *const signed_fields[] = { "order_id", "out_order_id", "price",
		"realprice", "type", "paytime", "extend", NULL };
	static const char *const required[] = { "order_id", "out_order_id", "price", "sign", NULL };
	const char *const *f;
	const char *appkey, *realprice;
	char inner[33], outer[33];
	struct sbuf s;
	enum verdict v = VERDICT_BAD_SIGNATURE;

	for (f = required; *f != NULL; f++) {
		const char *val = params_value(p, *f);

		if (val == NULL || *val == '\0')
			return VERDICT_MISSING_FIELD;
	}
	appkey = params_value(p, "appkey");
	if (appkey != NULL && strcmp(appkey, ch->merchant_id) != 0)
		return VERDICT_WRONG_MERCHANT;

	sbuf_init(&s);
	if (sbuf_adds(&s, ch->merchant_id) == -1)
		goto out;
	for (f = signed_fields; *f != NULL; f++) {
		const struct param *pa = params_get(p, *f);

		if (pa != NULL && sbuf_add(&s, pa->value, pa->vlen) == -1)
			goto out;
	}
	crypto_md5_hex(s.p, s.len, inner);
	sbuf_reset(&s);
	if (sbuf_add(&s, inner, 32) == -1 || sbuf_add(&s, ch->key, ch->key_len) == -1)
		goto out;
	crypto_md5_hex(s.p, s.len, outer);
	if (!family_hex_equal(outer, params_value(p, "sign")))
		goto out;

	v = VERDICT_BAD_AMOUNT;
	realprice = params_value(p, "realprice");
	if (realprice == NULL || *realprice == '\0')
		realprice = params_value(p, "price");
	if (family_amount(params_value(p, "price"), &ev->amount_fen) == -1 ||
	    family_amount(realprice, &ev->paid_amount_fen) == -1)
		goto out;

	ev->family = family_gatepay.name;
	ev->trade_no = params_value(p, "order_id");
	ev->out_trade_no = params_value(p, "out_order_id");
	ev->type = EVENT_PAID;
	ev->status = "paid";
	ev->amount = params_value(p, "price");
	ev->paid_amount = realprice;
	ev->method = params_value(p, "type");
	ev->subject = NULL;
	ev->passthrough = params_value(p, "extend");
	ev->gateway_time = params_value(p, "paytime");
	family_finish(ch, p, ev);
	v = VERDICT_OK;
out:
	if (s.p != NULL)
		explicit_bzero(s.p, s.len);
	sbuf_free(&s);
	return v;
}

/* ---- polling (SPEC §2.2) --------------------------------------------- */

/* GET {api_base}/api/order/check?appkey=..&out_order_id=..&sign=
 * md5(md5(appkey out_order_id) appsecret). */
static int
gatepay_poll_query(const struct channel *ch, const char *out_trade_no, struct poll_query *q)
{
	char inner[33], sign[33];
	struct sbuf s, qs;
	int rc = -1;

	memset(q, 0, sizeof(*q));
	sbuf_init(&s);
	sbuf_init(&qs);
	if (sbuf_adds(&s, ch->merchant_id) == -1 || sbuf_adds(&s, out_trade_no) == -1)
		goto out;
	crypto_md5_hex(s.p, s.len, inner);
	sbuf_reset(&s);
	if (sbuf_add(&s, inner, 32) == -1 || sbuf_add(&s, ch->key, ch->key_len) == -1)
		goto out;
	crypto_md5_hex(s.p, s.len, sign);
	explicit_bzero(s.p, s.len);
	sbuf_reset(&s);
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
	if (family_json_params(root, &a->raw) == -1) {
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
	if (family_json_params(data, &a->raw) == -1) {
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
	family_finish(ch, r, ev);
	poll_answer_set(a, NULL, POLL_PAID, "paid");
out:
	json_decref(root);
}

const struct family family_gatepay = {
	.name = "gatepay",
	.ack_body = "success",
	.verify = gatepay_verify,
	.poll_query = gatepay_poll_query,
	.poll_parse = gatepay_poll_parse,
};
