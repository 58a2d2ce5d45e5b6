#include "testcb.h"

#include <string.h>
#include <time.h>

#include "config.h"
#include "family.h"
#include "form.h"

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
	if (ch->family->test_params == NULL) {
		*why = "the channel's family has no test callback";
		goto out;
	}
	if (ch->family->test_params(ch, t, &p, why) == -1) {
		goto out;
	}
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
