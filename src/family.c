#include "family.h"

#include "amount.h"
#include "config.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
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

/* ---- polling ----------------------------------------------------------- */

void
poll_query_free(struct poll_query *q)
{
	if (q == NULL)
		return;
	/* An epay URL carries the merchant key. */
	if (q->url != NULL)
		explicit_bzero(q->url, strlen(q->url));
	if (q->body != NULL)
		explicit_bzero(q->body, q->body_len);
	free(q->url);
	free(q->body);
	memset(q, 0, sizeof(*q));
}

const char *
poll_state_str(enum poll_state s)
{
	switch (s) {
	case POLL_PAID:
		return "paid";
	case POLL_UNPAID:
		return "unpaid";
	case POLL_OTHER:
		return "other";
	case POLL_UNKNOWN:
		return "unknown";
	case POLL_ERROR:
		return "error";
	}
	return "invalid";
}

void
poll_answer_init(struct poll_answer *a)
{
	memset(a, 0, sizeof(*a));
	a->state = POLL_ERROR;
	params_init(&a->raw);
}

void
poll_answer_free(struct poll_answer *a)
{
	if (a == NULL)
		return;
	params_free(&a->raw);
	free(a->queried);
	poll_answer_init(a);
}

/* Copies `n` bytes of `s` into a->detail: control bytes become spaces so
 * the log line stays one line, and a cut never splits a UTF-8 sequence. */
static void
detail_copy(struct poll_answer *a, const char *s, size_t n)
{
	static const char cut[] = "...";
	size_t max = sizeof(a->detail) - 1, i;
	bool cutting = n > max;

	if (cutting) {
		n = max - (sizeof(cut) - 1);
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		a->detail[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	a->detail[n] = '\0';
	if (cutting)
		memcpy(a->detail + n, cut, sizeof(cut));
}

void
poll_answer_set(struct poll_answer *a, const struct channel *ch, enum poll_state s, const char *fmt,
    ...)
{
	struct sbuf b;
	va_list ap;
	int rc;

	a->state = s;
	sbuf_init(&b);
	va_start(ap, fmt);
	rc = sbuf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (rc == -1 || b.p == NULL) {
		detail_copy(a, "(out of memory)", strlen("(out of memory)"));
		goto out;
	}
	/* The text may echo the key, or any other secret: masked whole,
	 * before the cut, so no part of one is left. */
	if (ch != NULL && ch->key != NULL)
		b.len = config_mask_text(b.p, b.len, ch->key, ch->key_len);
	b.len = config_mask_secrets_n(config_masking(), b.p, b.len);
	detail_copy(a, b.p, b.len);
out:
	if (b.p != NULL)
		explicit_bzero(b.p, b.len);
	sbuf_free(&b);
}

void
poll_answer_mask(struct poll_answer *a)
{
	const struct config *c = config_masking();
	size_t i, j;

	for (i = 0; c != NULL && i < a->raw.n; i++) {
		struct param *v = &a->raw.v[i];

		for (j = 0; j < c->nsecrets; j++) {
			const struct config_secret *sec = &c->secrets[j];

			/* Payment data is not altered for a secret too short
			 * to be one (it would mask ordinary ids and amounts). */
			if (sec->len < POLL_MASK_MIN)
				continue;
			(void)config_mask_text(v->name, strlen(v->name), sec->p, sec->len);
			v->vlen = config_mask_text(v->value, v->vlen, sec->p, sec->len);
		}
	}
}

struct json_t *
poll_answer_json(struct poll_answer *a, const char *body, size_t len)
{
	json_error_t err;
	json_t *root;

	if (body == NULL || len == 0) {
		poll_answer_set(a, NULL, POLL_ERROR, "empty answer");
		return NULL;
	}
	/* The error's text quotes the body: keep only where it went wrong. */
	if ((root = json_loadb(body, len, 0, &err)) == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer is not JSON (line %d, column %d)",
		    err.line, err.column);
		return NULL;
	}
	if (!json_is_object(root)) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer is not a JSON object");
		json_decref(root);
		return NULL;
	}
	return root;
}

/* The shortest text of `d` that reads back as `d`, as PHP prints a float:
 * positional unless the exponent is extreme (then like %g). */
static int
real_text(double d, struct sbuf *out)
{
	char e[40], digits[20];
	int prec, ex, nd = 0, i;
	const char *p;

	for (prec = 1; prec <= 17; prec++) {
		snprintf(e, sizeof(e), "%.*e", prec - 1, d);
		if (strtod(e, NULL) == d)
			break;
	}
	if (prec > 17)
		prec = 17;
	/* e is [-]D[.DDD]e(+|-)XX */
	p = e;
	if (*p == '-' && sbuf_addc(out, '-') == -1)
		return -1;
	if (*p == '-')
		p++;
	for (; *p != 'e' && *p != '\0'; p++)
		if (*p >= '0' && *p <= '9' && nd < (int)sizeof(digits))
			digits[nd++] = *p;
	ex = *p == 'e' ? atoi(p + 1) : 0;
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	if (ex < -5 || ex > 15) {
		snprintf(e, sizeof(e), "%.*g", prec, d < 0 ? -d : d);
		return sbuf_adds(out, e);
	}
	if (ex < 0) {
		if (sbuf_adds(out, "0.") == -1)
			return -1;
		for (i = -1; i > ex; i--)
			if (sbuf_addc(out, '0') == -1)
				return -1;
		return sbuf_add(out, digits, (size_t)nd);
	}
	for (i = 0; i <= ex; i++)
		if (sbuf_addc(out, i < nd ? digits[i] : '0') == -1)
			return -1;
	if (nd > ex + 1 &&
	    (sbuf_addc(out, '.') == -1 ||
		sbuf_add(out, digits + ex + 1, (size_t)(nd - ex - 1)) == -1))
		return -1;
	return 0;
}

int
family_json_text(const struct json_t *v, struct sbuf *out)
{
	char buf[32];

	switch (json_typeof(v)) {
	case JSON_STRING:
		return sbuf_add(out, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return sbuf_adds(out, buf);
	case JSON_REAL:
		return real_text(json_real_value(v), out);
	case JSON_TRUE:
		return sbuf_addc(out, '1');
	case JSON_FALSE:
	case JSON_NULL:
		return 0;
	case JSON_OBJECT:
	case JSON_ARRAY:
		break;
	}
	return -1;
}

int
family_json_params(const struct json_t *obj, struct params *raw)
{
	const char *name;
	json_t *v;
	struct sbuf b;
	int rc = -1;

	if (!json_is_object(obj) || json_object_size(obj) > FORM_MAX_PARAMS)
		return -1;
	sbuf_init(&b);
	json_object_foreach((json_t *)obj, name, v)
	{
		if (json_is_object(v) || json_is_array(v))
			continue;
		sbuf_reset(&b);
		if (family_json_text(v, &b) == -1 ||
		    params_set(raw, name, b.p != NULL ? b.p : "", b.len) == -1)
			goto out;
	}
	rc = 0;
out:
	sbuf_free(&b);
	return rc;
}

int
poll_answer_order(struct poll_answer *a, const char *got, const char *queried)
{
	if (got == NULL || *got == '\0' || strcmp(got, queried) == 0)
		return 0;
	poll_answer_set(a, NULL, POLL_ERROR, "answer is about order %s, not %s", got, queried);
	return -1;
}

const char *
poll_answer_out_trade_no(struct poll_answer *a, const char *got, const char *queried)
{
	if (got != NULL && *got != '\0')
		return got;
	free(a->queried);
	a->queried = xstrdup(queried);
	return a->queried;
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
