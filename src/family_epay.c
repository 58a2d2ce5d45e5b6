/* Epay / 易支付 and compatibles (SPEC §2.1). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "crypto.h"
#include "family.h"

/* How far a V2 (RSA) notification's timestamp may be from our clock. */
#define EPAY_RSA_WINDOW 300

static const char *const epay_unsigned[] = { "sign", "sign_type", NULL };

static enum verdict
epay_check_signature(const struct channel *ch, const struct params *p, const char *sign)
{
	struct sbuf s;
	char md5[33];
	enum verdict v = VERDICT_BAD_SIGNATURE;

	sbuf_init(&s);
	if (ch->sign_type == SIGN_RSA) {
		if (family_sign_string(p, epay_unsigned, SKIP_EMPTY | SKIP_BLANK, &s) == -1)
			goto out;
		if (crypto_rsa_sha256_verify(ch->platform_key, s.p ? s.p : "", s.len, sign,
			strlen(sign)) == 1)
			v = VERDICT_OK;
	} else {
		if (family_sign_string(p, epay_unsigned, SKIP_EMPTY, &s) == -1 ||
		    sbuf_add(&s, ch->key, ch->key_len) == -1)
			goto out;
		crypto_md5_hex(s.p, s.len, md5);
		if (family_hex_equal(md5, sign))
			v = VERDICT_OK;
	}
out:
	/* The string ends with the merchant key: do not leave it in freed memory. */
	if (s.p != NULL)
		explicit_bzero(s.p, s.len);
	sbuf_free(&s);
	return v;
}

static enum verdict
epay_check_timestamp(const struct params *p, time_t now)
{
	const char *ts = params_value(p, "timestamp");
	long long t = 0;
	size_t i;

	if (ts == NULL || *ts == '\0' || strlen(ts) > 12)
		return VERDICT_MISSING_FIELD;
	for (i = 0; ts[i] != '\0'; i++) {
		if (ts[i] < '0' || ts[i] > '9')
			return VERDICT_STALE;
		t = t * 10 + (ts[i] - '0');
	}
	if (t < (long long)now - EPAY_RSA_WINDOW || t > (long long)now + EPAY_RSA_WINDOW)
		return VERDICT_STALE;
	return VERDICT_OK;
}

static enum verdict
epay_verify(const struct channel *ch, const struct params *p, time_t now, struct event *ev)
{
	static const char *const required[] = { "pid", "trade_no", "out_trade_no", "money",
		"trade_status", "sign", NULL };
	const char *const *r;
	const char *sign_type, *status;
	enum verdict v;

	for (r = required; *r != NULL; r++) {
		const char *val = params_value(p, *r);

		if (val == NULL || *val == '\0')
			return VERDICT_MISSING_FIELD;
	}
	/* The algorithm comes from the channel, never from the request. */
	sign_type = params_value(p, "sign_type");
	if (sign_type != NULL && *sign_type != '\0' &&
	    strcasecmp(sign_type, ch->sign_type == SIGN_RSA ? "RSA" : "MD5") != 0)
		return VERDICT_SIGN_TYPE;
	if (strcmp(params_value(p, "pid"), ch->merchant_id) != 0)
		return VERDICT_WRONG_MERCHANT;
	if ((v = epay_check_signature(ch, p, params_value(p, "sign"))) != VERDICT_OK)
		return v;
	if (ch->sign_type == SIGN_RSA && (v = epay_check_timestamp(p, now)) != VERDICT_OK)
		return v;
	if (family_amount(params_value(p, "money"), &ev->amount_fen) == -1)
		return VERDICT_BAD_AMOUNT;

	status = params_value(p, "trade_status");
	ev->family = family_epay.name;
	ev->trade_no = params_value(p, "trade_no");
	ev->out_trade_no = params_value(p, "out_trade_no");
	if (strcmp(status, "TRADE_SUCCESS") == 0) {
		ev->type = EVENT_PAID;
		ev->status = "paid";
	} else {
		ev->type = EVENT_STATUS;
		ev->status = status;
	}
	ev->amount = params_value(p, "money");
	ev->paid_amount = ev->amount;
	ev->paid_amount_fen = ev->amount_fen;
	ev->method = params_value(p, "type");
	ev->subject = params_value(p, "name");
	ev->passthrough = params_value(p, "param");
	ev->gateway_time = params_value(p, "endtime");
	family_finish(ch, p, ev);
	return VERDICT_OK;
}

const struct family family_epay = {
	.name = "epay",
	.ack_body = "success",
	.verify = epay_verify,
};
