#include "testcb.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "family.h"
#include "form.h"

/* What the gateway sends, by family, before its sign: the field names of
 * SPEC §2 and values that read as the test they are. */
static int
testcb_params(const struct channel *ch, const struct testcb_spec *t, struct params *p,
    const char **why)
{
	const char *fam = ch->family->name;
	char when[32];
	struct tm tm;
	int rc = 0;

#define SET(n, v) (rc |= params_set(p, (n), (v), strlen(v)))
	if (strcmp(fam, "epay") == 0) {
		SET("pid", ch->merchant_id);
		SET("trade_no", t->trade_no);
		SET("out_trade_no", t->out_trade_no);
		SET("type", "alipay");
		SET("name", "payrelay send-test");
		SET("money", t->amount);
		SET("trade_status", t->status != NULL ? t->status : "TRADE_SUCCESS");
		SET("param", "payrelay-test");
		SET("sign_type", "MD5");
	} else if (strcmp(fam, "gatepay") == 0) {
		if (t->status != NULL) {
			*why = "gatepay notifies payments only: it has no status to send";
			return -1;
		}
		snprintf(when, sizeof(when), "%lld", (long long)t->now);
		SET("order_id", t->trade_no);
		SET("out_order_id", t->out_trade_no);
		SET("price", t->amount);
		SET("realprice", t->amount);
		SET("type", "alipay");
		SET("paytime", when);
		SET("extend", "payrelay-test");
	} else if (strcmp(fam, "payindex") == 0) {
		if (gmtime_r(&t->now, &tm) == NULL ||
		    strftime(when, sizeof(when), "%Y%m%d%H%M%S", &tm) == 0)
			when[0] = '\0';
		SET("memberid", ch->merchant_id);
		SET("orderid", t->out_trade_no);
		SET("amount", t->amount);
		SET("transaction_id", t->trade_no);
		SET("datetime", when);
		SET("returncode", t->status != NULL ? t->status : "00");
		SET("attach", "payrelay-test");
	} else {
		*why = "the channel's family has no test callback";
		return -1;
	}
#undef SET
	if (rc != 0)
		*why = "out of memory";
	return rc != 0 ? -1 : 0;
}

int
testcb_build(const struct channel *ch, const struct testcb_spec *t, struct sbuf *form,
    const char **why)
{
	struct params p;
	char sign[33];
	size_t i;
	int rc = -1;

	*why = "out of memory";
	params_init(&p);
	if (ch->family->sign == NULL) {
		*why = "the channel's family cannot sign a callback";
		goto out;
	}
	if (ch->sign_type == SIGN_RSA) {
		*why = "the channel's callbacks are signed with the platform's RSA private key, "
		       "which payrelay does not hold";
		goto out;
	}
	if (testcb_params(ch, t, &p, why) == -1)
		goto out;
	if (ch->family->sign(ch, &p, sign) == -1) {
		*why = "signing failed (crypto library)";
		goto out;
	}
	for (i = 0; i < p.n; i++)
		if (family_form_add(form, p.v[i].name, p.v[i].value) == -1)
			goto out;
	if (family_form_add(form, "sign", sign) == -1)
		goto out;
	rc = 0;
out:
	params_free(&p);
	return rc;
}

bool
testcb_is_test_id(const char *s)
{
	size_t n = sizeof(TESTCB_PREFIX) - 1, i;

	if (strncmp(s, TESTCB_PREFIX, n) != 0 || strlen(s) != TESTCB_ID_LEN)
		return false;
	for (i = n; s[i] != '\0'; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}
