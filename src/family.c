#include "family.h"

#include "amount.h"
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const struct family *const families[] = {
	&family_epay,
	&family_gatepay,
	&family_payindex,
};

const struct family *
family_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(families) / sizeof(families[0]); i++)
		if (strcmp(families[i]->name, name) == 0)
			return families[i];
	return NULL;
}

const char *
verdict_str(enum verdict v)
{
	switch (v) {
	case VERDICT_OK:
		return "ok";
	case VERDICT_MISSING_FIELD:
		return "missing field";
	case VERDICT_BAD_SIGNATURE:
		return "bad signature";
	case VERDICT_SIGN_TYPE:
		return "sign_type differs from the channel's";
	case VERDICT_WRONG_MERCHANT:
		return "wrong merchant id";
	case VERDICT_BAD_AMOUNT:
		return "malformed amount";
	case VERDICT_STALE:
		return "timestamp outside the allowed window";
	}
	return "unknown";
}

/* PHP trim()'s default set: " \t\n\r\0\x0B". */
static bool
is_blank(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\0' && c != '\v')
			return false;
	}
	return true;
}

static bool
is_excluded(const char *name, const char *const *exclude)
{
	for (; exclude != NULL && *exclude != NULL; exclude++)
		if (strcmp(name, *exclude) == 0)
			return true;
	return false;
}

static int
param_cmp(const void *a, const void *b)
{
	const struct param *const *x = a, *const *y = b;

	/* strcmp compares as unsigned char: byte order, as PHP's ksort does
	 * for these non-numeric names. */
	return strcmp((*x)->name, (*y)->name);
}

int
family_sign_string(const struct params *p, const char *const *exclude, unsigned skip,
    struct sbuf *out)
{
	const struct param **v = NULL;
	size_t i, n = 0;
	int rc = -1;

	if (p->n > 0 && (v = calloc(p->n, sizeof(*v))) == NULL)
		goto out;
	for (i = 0; i < p->n; i++) {
		const struct param *pa = &p->v[i];

		if (is_excluded(pa->name, exclude))
			continue;
		if ((skip & SKIP_EMPTY) && pa->vlen == 0)
			continue;
		if ((skip & SKIP_BLANK) && is_blank(pa->value, pa->vlen))
			continue;
		if ((skip & SKIP_ZERO) && pa->vlen == 1 && pa->value[0] == '0')
			continue;
		v[n++] = pa;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), param_cmp);
	for (i = 0; i < n; i++) {
		if ((i > 0 && sbuf_addc(out, '&') == -1) || sbuf_adds(out, v[i]->name) == -1 ||
		    sbuf_addc(out, '=') == -1 || sbuf_add(out, v[i]->value, v[i]->vlen) == -1)
			goto out;
	}
	rc = 0;
out:
	free(v);
	return rc;
}

bool
family_hex_equal(const char *want, const char *got)
{
	char norm[65];
	size_t i, n;

	if (got == NULL)
		return false;
	n = strlen(got);
	if (n >= sizeof(norm))
		return false;
	for (i = 0; i < n; i++)
		norm[i] = (char)tolower((unsigned char)got[i]);
	norm[n] = '\0';
	return ct_equal(want, strlen(want), norm, n);
}

int
family_amount(const char *s, int64_t *fen)
{
	if (s == NULL)
		return -1;
	return amount_parse(s, strlen(s), fen);
}

void
family_finish(const struct channel *ch, const struct params *p, struct event *ev)
{
	ev->raw = p;
	ev->channel = ch->name;
	ev->merchant_id = ch->merchant_id;
	event_make_id(ev->id, ch->name, ev->trade_no, ev->status);
}
