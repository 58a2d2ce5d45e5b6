#include "poll_answer.h"

#include "config.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
poll_answer_json_text(const struct json_t *v, struct sbuf *out)
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
poll_answer_json_params(const struct json_t *obj, struct params *raw)
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
		if (poll_answer_json_text(v, &b) == -1 ||
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

void
poll_answer_masked_copy(const struct channel *ch, const char *s, char *out, size_t n)
{
	static const char cut[] = "...";
	struct sbuf b;
	size_t len, i;

	if (n == 0)
		return;
	out[0] = '\0';
	sbuf_init(&b);
	if (s == NULL || sbuf_adds(&b, s) == -1 || b.p == NULL)
		goto out;
	/* Masked whole, before the cut, so no part of a secret is left. */
	if (ch != NULL && ch->key != NULL)
		b.len = config_mask_text(b.p, b.len, ch->key, ch->key_len);
	b.len = config_mask_secrets_n(config_masking(), b.p, b.len);
	len = b.len;
	if (len > n - 1) {
		len = n - 1 > sizeof(cut) - 1 ? n - 1 - (sizeof(cut) - 1) : 0;
		while (len > 0 && ((unsigned char)b.p[len] & 0xc0) == 0x80)
			len--;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)b.p[i];

		out[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	if (len < b.len && n - 1 - len >= sizeof(cut) - 1) {
		memcpy(out + len, cut, sizeof(cut) - 1);
		len += sizeof(cut) - 1;
	}
	out[len] = '\0';
out:
	if (b.p != NULL)
		explicit_bzero(b.p, b.len);
	sbuf_free(&b);
}
