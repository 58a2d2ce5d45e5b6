#include "family.h"

#include "amount.h"
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* The table: one row per family_NAME.c. Nothing else names a family
 * (scripts/check_families.py). */
extern const struct family family_epay;
extern const struct family family_gatepay;
extern const struct family family_payindex;

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

size_t
family_count(void)
{
	return sizeof(families) / sizeof(families[0]);
}

const struct family *
family_at(size_t i)
{
	return i < family_count() ? families[i] : NULL;
}

void
family_names(bool (*has)(const struct family *), char *out, size_t n)
{
	size_t i, k = 0, total = 0, len = 0;

	for (i = 0; i < family_count(); i++)
		if (has == NULL || has(families[i]))
			total++;
	if (n > 0)
		out[0] = '\0';
	for (i = 0; i < family_count() && len < n; i++) {
		int w;

		if (has != NULL && !has(families[i]))
			continue;
		k++;
		w = snprintf(out + len, n - len, "%s%s",
		    k == 1           ? ""
			: k == total ? " or "
				     : ", ",
		    families[i]->name);
		if (w < 0)
			break;
		len += (size_t)w;
	}
}

bool
family_rsa(const struct family *f)
{
	return (f->caps & FAMILY_RSA) != 0;
}

bool
family_sweeps(const struct family *f)
{
	return f->sweep_query != NULL && f->sweep_parse != NULL && f->sweep_page > 0;
}

bool
family_returns(const struct family *f)
{
	return (f->caps & FAMILY_RETURN) != 0 && f->verify_return != NULL;
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
	case VERDICT_NOT_CANONICAL:
		return "a field naming the payment is not canonical";
	case VERDICT_NUL:
		return "NUL byte in a value";
	case VERDICT_BAD_NAME:
		return "parameter name is not an identifier";
	case VERDICT_AMBIGUOUS:
		return "the signed fields could be cut into other fields";
	case VERDICT_CRYPTO:
		return "the crypto library failed";
	}
	return "unknown";
}

const char *
verdict_label(enum verdict v)
{
	static const char *const labels[] = {
		[VERDICT_OK] = "ok",
		[VERDICT_MISSING_FIELD] = "missing_field",
		[VERDICT_BAD_SIGNATURE] = "bad_signature",
		[VERDICT_SIGN_TYPE] = "sign_type",
		[VERDICT_WRONG_MERCHANT] = "wrong_merchant",
		[VERDICT_BAD_AMOUNT] = "bad_amount",
		[VERDICT_STALE] = "stale",
		[VERDICT_NOT_CANONICAL] = "not_canonical",
		[VERDICT_NUL] = "nul_byte",
		[VERDICT_BAD_NAME] = "bad_name",
		[VERDICT_AMBIGUOUS] = "ambiguous",
		[VERDICT_CRYPTO] = "crypto_failure",
	};

	if ((size_t)v < sizeof(labels) / sizeof(labels[0]) && labels[v] != NULL)
		return labels[v];
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

/* True when a signing string of these rules leaves `pa` out. */
static bool
param_skipped(const struct param *pa, const char *const *exclude, unsigned skip)
{
	return is_excluded(pa->name, exclude) || ((skip & SKIP_EMPTY) && pa->vlen == 0) ||
	    ((skip & SKIP_BLANK) && is_blank(pa->value, pa->vlen)) ||
	    ((skip & SKIP_ZERO) && pa->vlen == 1 && pa->value[0] == '0');
}

uint64_t
family_unsigned_mask(const struct params *p, const char *const *exclude, unsigned skip)
{
	uint64_t m = 0;
	size_t i;

	for (i = 0; i < p->n && i < 64; i++)
		if (param_skipped(&p->v[i], exclude, skip))
			m |= (uint64_t)1 << i;
	return m;
}

const char *
family_signed(const struct params *p, uint64_t unsigned_mask, const char *name)
{
	const struct param *pa = params_get(p, name);
	size_t i;

	if (pa == NULL)
		return NULL;
	i = (size_t)(pa - p->v);
	if (i >= 64 || (unsigned_mask >> i & 1))
		return NULL;
	return pa->value;
}

void
family_passthrough(const struct params *p, uint64_t unsigned_mask, const char *name,
    struct event *ev)
{
	ev->passthrough = params_value(p, name);
	ev->passthrough_unsigned =
	    ev->passthrough != NULL && family_signed(p, unsigned_mask, name) == NULL;
}

enum verdict
family_check_params(const struct params *p)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		const struct param *pa = &p->v[i];
		const char *c;

		if (memchr(pa->value, '\0', pa->vlen) != NULL)
			return VERDICT_NUL;
		for (c = pa->name; *c != '\0'; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
				(*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
				return VERDICT_BAD_NAME;
	}
	return VERDICT_OK;
}

enum verdict
family_unambiguous(const struct params *p, uint64_t unsigned_mask, const char *const *names)
{
	char pat[FORM_MAX_NAME + 3];
	const char *const *n;
	size_t i, pl;

	for (n = names; *n != NULL; n++) {
		pl = (size_t)snprintf(pat, sizeof(pat), "&%s=", *n);
		if (pl >= sizeof(pat))
			return VERDICT_AMBIGUOUS;
		for (i = 0; i < p->n && i < 64; i++) {
			const struct param *pa = &p->v[i];

			if ((unsigned_mask >> i & 1) == 0 && pa->vlen >= pl &&
			    memmem(pa->value, pa->vlen, pat, pl) != NULL)
				return VERDICT_AMBIGUOUS;
		}
	}
	return VERDICT_OK;
}

bool
family_canonical_id(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s >= 0x7f || *s == '&' || *s == '=' || *s == '%')
			return false;
	return true;
}

bool
family_canonical_amount(const char *s)
{
	size_t i = 0, frac = 0;

	if (s == NULL || s[0] < '0' || s[0] > '9')
		return false;
	if (s[0] == '0')
		i = 1; /* "0", or "0." and decimals: never a leading zero */
	else
		while (s[i] >= '0' && s[i] <= '9')
			i++;
	if (s[i] == '\0')
		return true;
	if (s[i++] != '.')
		return false;
	while (s[i] >= '0' && s[i] <= '9') {
		i++;
		frac++;
	}
	return s[i] == '\0' && frac >= 1 && frac <= 4;
}

enum verdict
family_require(const struct params *p, uint64_t unsigned_mask, const char *const *ids,
    const char *const *amounts)
{
	const char *const *f;
	const char *v;

	for (f = ids; f != NULL && *f != NULL; f++) {
		if ((v = family_signed(p, unsigned_mask, *f)) == NULL || *v == '\0')
			return VERDICT_MISSING_FIELD;
		if (!family_canonical_id(v))
			return VERDICT_NOT_CANONICAL;
	}
	for (f = amounts; f != NULL && *f != NULL; f++) {
		if ((v = family_signed(p, unsigned_mask, *f)) == NULL || *v == '\0')
			return VERDICT_MISSING_FIELD;
		if (!family_canonical_amount(v))
			return VERDICT_BAD_AMOUNT;
	}
	return VERDICT_OK;
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

		if (!param_skipped(pa, exclude, skip))
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

int
family_finish(const struct channel *ch, const struct params *p, struct event *ev)
{
	ev->raw = p;
	ev->channel = ch->name;
	ev->merchant_id = ch->merchant_id;
	return event_make_id(ev->id, ch->name, ev->trade_no, ev->status);
}

/* PHP urlencode(): A-Z a-z 0-9 - _ . stay, space is '+', the rest %XX. */
static int
urlencode(struct sbuf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *u = (const unsigned char *)s;
	char esc[3] = { '%', 0, 0 };

	for (; *u != '\0'; u++) {
		int rc;

		if ((*u >= 'A' && *u <= 'Z') || (*u >= 'a' && *u <= 'z') ||
		    (*u >= '0' && *u <= '9') || *u == '-' || *u == '_' || *u == '.')
			rc = sbuf_addc(out, (char)*u);
		else if (*u == ' ')
			rc = sbuf_addc(out, '+');
		else {
			esc[1] = hex[*u >> 4];
			esc[2] = hex[*u & 0xf];
			rc = sbuf_add(out, esc, sizeof(esc));
		}
		if (rc == -1)
			return -1;
	}
	return 0;
}

int
family_form_add(struct sbuf *out, const char *name, const char *value)
{
	if ((out->len > 0 && sbuf_addc(out, '&') == -1) || urlencode(out, name) == -1 ||
	    sbuf_addc(out, '=') == -1 || urlencode(out, value) == -1)
		return -1;
	return 0;
}

/* ---- the gateway client's answers (SPEC §10.3) ------------------------- */

void
family_answer_init(struct family_answer *a)
{
	memset(a, 0, sizeof(*a));
	a->outcome = FAMILY_ANSWER_GARBAGE;
	params_init(&a->raw);
}

void
family_answer_free(struct family_answer *a)
{
	if (a == NULL)
		return;
	json_decref(a->data);
	params_free(&a->raw);
	family_answer_init(a);
}

/* ---- creating a payment (SPEC §10.1) ------------------------------------ */

const char *
pay_url_kind_str(enum pay_url_kind k)
{
	switch (k) {
	case PAY_URL:
		return "pay_url";
	case PAY_QRCODE:
		return "qrcode";
	case PAY_URLSCHEME:
		return "urlscheme";
	}
	return "pay_url";
}

void
pay_result_free(struct pay_result *r)
{
	if (r == NULL)
		return;
	free(r->url);
	free(r->trade_no);
	r->url = r->trade_no = NULL;
}

void
pay_result_error(struct pay_result *r, const char *code, const char *fmt, ...)
{
	va_list ap;
	size_t i, n;

	r->ok = false;
	snprintf(r->code, sizeof(r->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	/* Cut at a character, not inside one: the answer is JSON (UTF-8). */
	n = strlen(r->msg);
	if (n == sizeof(r->msg) - 1) {
		i = n;
		while (i > 0 && ((unsigned char)r->msg[i - 1] & 0xC0) == 0x80)
			i--;
		if (i > 0 && ((unsigned char)r->msg[i - 1] & 0x80) != 0) {
			unsigned char lead = (unsigned char)r->msg[i - 1];
			size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;

			if (n - (i - 1) < want)
				r->msg[i - 1] = '\0';
		}
	}
	/* One line in the log and the answer. */
	for (i = 0; r->msg[i] != '\0'; i++)
		if ((unsigned char)r->msg[i] < 0x20)
			r->msg[i] = ' ';
	for (i = 0; r->code[i] != '\0'; i++)
		if ((unsigned char)r->code[i] < 0x20)
			r->code[i] = ' ';
}

void
pay_result_gateway(struct pay_result *r, const struct channel *ch, const char *code,
    const char *msg)
{
	r->ok = false;
	/* Masked before the cut: a gateway echoing the key in a long message
	 * would otherwise leave the key's start, which no later masking finds. */
	poll_answer_masked_copy(ch, code != NULL ? code : "", r->code, sizeof(r->code));
	poll_answer_masked_copy(ch, msg != NULL && *msg != '\0' ? msg : "(no msg)", r->msg,
	    sizeof(r->msg));
}
