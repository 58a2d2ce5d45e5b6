/* gatepay (SPEC §2.2): sign = md5(md5(appkey order_id out_order_id price
 * realprice type paytime extend) appsecret), a notify means paid. */
#include <string.h>

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

const struct family family_gatepay = {
	.name = "gatepay",
	.ack_body = "success",
	.verify = gatepay_verify,
};
