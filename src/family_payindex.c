/* 聚合支付 Pay_Index (SPEC §2.3): sorted k=v over the non-empty() fields but
 * sign and attach, "&key=KEY" appended, UPPERCASE md5. */
#include <string.h>

#include "config.h"
#include "crypto.h"
#include "family.h"

static const char *const payindex_unsigned[] = { "sign", "attach", NULL };

static enum verdict
payindex_verify(const struct channel *ch, const struct params *p, time_t now, struct event *ev)
{
	static const char *const required[] = { "memberid", "orderid", "amount", "transaction_id",
		"returncode", "sign", NULL };
	const char *const *f;
	const char *code, *true_amount;
	char md5[33];
	struct sbuf s;
	enum verdict v = VERDICT_BAD_SIGNATURE;

	for (f = required; *f != NULL; f++) {
		const char *val = params_value(p, *f);

		if (val == NULL || *val == '\0')
			return VERDICT_MISSING_FIELD;
	}
	if (strcmp(params_value(p, "memberid"), ch->merchant_id) != 0)
		return VERDICT_WRONG_MERCHANT;

	sbuf_init(&s);
	if (family_sign_string(p, payindex_unsigned, SKIP_EMPTY | SKIP_ZERO, &s) == -1 ||
	    sbuf_adds(&s, "&key=") == -1 || sbuf_add(&s, ch->key, ch->key_len) == -1)
		goto out;
	crypto_md5_hex(s.p, s.len, md5);
	/* family_hex_equal compares in lower case: the gateway's upper case
	 * hex is folded, so either case verifies. */
	if (!family_hex_equal(md5, params_value(p, "sign")))
		goto out;

	v = VERDICT_BAD_AMOUNT;
	/* true_amount that PHP's empty() drops ("" or "0") was not sent. */
	true_amount = params_value(p, "true_amount");
	if (true_amount == NULL || *true_amount == '\0' || strcmp(true_amount, "0") == 0)
		true_amount = params_value(p, "amount");
	if (family_amount(params_value(p, "amount"), &ev->amount_fen) == -1 ||
	    family_amount(true_amount, &ev->paid_amount_fen) == -1)
		goto out;

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
	ev->method = params_value(p, "bankcode");
	ev->subject = NULL;
	ev->passthrough = params_value(p, "attach");
	ev->gateway_time = params_value(p, "datetime");
	family_finish(ch, p, ev);
	v = VERDICT_OK;
out:
	if (s.p != NULL)
		explicit_bzero(s.p, s.len);
	sbuf_free(&s);
	return v;
}

const struct family family_payindex = {
	.name = "payindex",
	.ack_body = "OK",
	.verify = payindex_verify,
};
