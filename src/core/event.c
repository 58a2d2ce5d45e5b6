#include "event.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "amount.h"
#include "crypto.h"

const char *
event_type_str(enum event_type t)
{
	switch (t) {
	case EVENT_PAID:
		return "order.paid";
	case EVENT_STATUS:
		return "order.status";
	case EVENT_AMOUNT_MISMATCH:
		return "order.amount_mismatch";
	case EVENT_REFUNDED:
		return "order.refunded";
	}
	return "order.unknown";
}

const char *
event_source_str(enum event_source s)
{
	switch (s) {
	case SOURCE_CALLBACK:
		return "callback";
	case SOURCE_POLL:
		return "poll";
	case SOURCE_REPLAY:
		return "replay";
	case SOURCE_ADMIN:
		return "admin";
	case SOURCE_RETURN:
		return "return";
	}
	return "unknown";
}

/* "evt_" + md5 of `parts` joined by NUL bytes (docs/ingest.md, event ids):
 * no part holds a NUL, so no two lists of parts give one input. */
static int
make_id(char out[EVENT_ID_LEN + 1], const char *const *parts, size_t n)
{
	struct sbuf s;
	char md5[33];
	size_t i;
	int rc = -1;

	/* Never a made-up id: without one the record step refuses the event. */
	memset(out, 0, EVENT_ID_LEN + 1);
	sbuf_init(&s);
	for (i = 0; i < n; i++)
		if ((i > 0 && sbuf_addc(&s, '\0') == -1) || sbuf_adds(&s, parts[i]) == -1)
			goto out;
	if (crypto_md5_hex(s.p, s.len, md5) == -1)
		goto out;
	memcpy(out, "evt_", 4);
	memcpy(out + 4, md5, 33);
	rc = 0;
out:
	sbuf_free(&s);
	return rc;
}

int
event_make_id(char out[EVENT_ID_LEN + 1], const char *channel, const char *trade_id,
    const char *status)
{
	const char *parts[] = { channel, trade_id, status };

	return make_id(out, parts, 3);
}

int
event_make_refund_id(char out[EVENT_ID_LEN + 1], const char *channel, const char *trade_id,
    const char *refund_id)
{
	/* Four parts where a payment's id has three: never the same input. */
	const char *parts[] = { channel, trade_id, "refunded", refund_id };

	return make_id(out, parts, 4);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. Refuses
 * overlong forms, surrogates and code points above U+10FFFF. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len, i;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

char *
utf8_sanitize(const char *s, size_t n, size_t *outlen)
{
	const unsigned char *u = (const unsigned char *)s;
	struct sbuf b;
	size_t i = 0;

	sbuf_init(&b);
	if (sbuf_add(&b, "", 0) == -1)
		return NULL;
	while (i < n) {
		size_t len = utf8_seq(u + i, n - i);

		if (len == 0) {
			if (sbuf_add(&b, "\xef\xbf\xbd", 3) == -1)
				goto fail;
			i++;
			continue;
		}
		if (sbuf_add(&b, s + i, len) == -1)
			goto fail;
		i += len;
	}
	*outlen = b.len;
	return sbuf_steal(&b);
fail:
	sbuf_free(&b);
	return NULL;
}

static bool
utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, len;

	while (i < n) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if ((len = utf8_seq(u + i, n - i)) == 0)
			return false;
		i += len;
	}
	return true;
}

static json_t *
json_text(const char *s, size_t n)
{
	size_t len;
	char *clean;
	json_t *j;

	/* Nearly every value is valid already: no copy then. */
	if (utf8_valid(s, n))
		return json_stringn_nocheck(s, n);
	if ((clean = utf8_sanitize(s, n, &len)) == NULL)
		return NULL;
	j = json_stringn_nocheck(clean, len);
	free(clean);
	return j;
}

/* Sets key to the string s, or leaves it out when s is NULL. */
static int
set_str(json_t *o, const char *key, const char *s)
{
	json_t *j;

	if (s == NULL)
		return 0;
	if ((j = json_text(s, strlen(s))) == NULL)
		return -1;
	return json_object_set_new_nocheck(o, key, j);
}

static int
set_int(json_t *o, const char *key, json_int_t v)
{
	return json_object_set_new_nocheck(o, key, json_integer(v));
}

/* A field that is one of the received parameters' values shares the string
 * already made for "raw" (most of them are): fewer copies per event. */
static int
set_field(json_t *o, const char *key, const char *s, const struct params *p, json_t **vals)
{
	size_t i;

	for (i = 0; s != NULL && p != NULL && i < p->n; i++)
		if (vals[i] != NULL && p->v[i].value == s)
			return json_object_set_nocheck(o, key, vals[i]);
	return set_str(o, key, s);
}

char *
event_to_json(const struct event *ev)
{
	const struct params *p = ev->raw;
	json_t *o = json_object(), *raw = json_object(), *unsig = NULL;
	json_t *vals[FORM_MAX_PARAMS] = { NULL };
	char received[25], stackbuf[4096];
	char *out = NULL;
	size_t i, n;
	int rc = 0;

	if (o == NULL || raw == NULL || (p != NULL && p->n > FORM_MAX_PARAMS))
		goto out;
	/* raw first: the fields below share its strings (raw holds them). */
	for (i = 0; p != NULL && i < p->n; i++) {
		const struct param *pa = &p->v[i];
		size_t klen;
		char *key;

		if (strcmp(pa->name, "sign") == 0)
			continue;
		klen = strlen(pa->name);
		if (utf8_valid(pa->name, klen))
			key = NULL;
		else if ((key = utf8_sanitize(pa->name, klen, &klen)) == NULL) {
			rc = -1;
			break;
		}
		if (i < 64 && (ev->unsigned_mask >> i & 1)) {
			/* Not covered by the signature: shown apart, and never
			 * shared with a normalized field (vals[i] stays NULL). */
			json_t *u = json_text(pa->value, pa->vlen);

			if (unsig == NULL && (unsig = json_object()) == NULL)
				rc = -1;
			rc |= u == NULL || unsig == NULL
			    ? -1
			    : json_object_set_new_nocheck(unsig, key ? key : pa->name, u);
			free(key);
			continue;
		}
		vals[i] = json_text(pa->value, pa->vlen);
		rc |= vals[i] == NULL
		    ? -1
		    : json_object_set_new_nocheck(raw, key ? key : pa->name, vals[i]);
		free(key);
	}
	format_iso8601_ms(received, ev->received_ms);
	rc |= set_str(o, "id", ev->id);
	rc |= set_str(o, "type", event_type_str(ev->type));
	rc |= set_str(o, "channel", ev->channel);
	rc |= set_str(o, "family", ev->family);
	rc |= set_str(o, "merchant_id", ev->merchant_id);
	rc |= set_field(o, "trade_no", ev->trade_no, p, vals);
	rc |= set_field(o, "out_trade_no", ev->out_trade_no, p, vals);
	rc |= set_field(o, "status", ev->status, p, vals);
	rc |= set_field(o, "amount", ev->amount, p, vals);
	rc |= set_int(o, "amount_fen", ev->amount_fen);
	rc |= set_field(o, "paid_amount", ev->paid_amount, p, vals);
	rc |= set_int(o, "paid_amount_fen", ev->paid_amount_fen);
	rc |= set_str(o, "currency", "CNY");
	rc |= set_field(o, "method", ev->method, p, vals);
	rc |= set_field(o, "subject", ev->subject, p, vals);
	rc |= set_field(o, "passthrough", ev->passthrough, p, vals);
	if (ev->passthrough != NULL && ev->passthrough_unsigned)
		rc |= json_object_set_new_nocheck(o, "passthrough_signed", json_false());
	rc |= set_field(o, "gateway_time", ev->gateway_time, p, vals);
	rc |= set_str(o, "received_at", received);
	rc |= set_str(o, "source", event_source_str(ev->source));
	rc |= json_object_set_nocheck(o, "raw", raw);
	if (unsig != NULL)
		rc |= json_object_set_nocheck(o, "unsigned", unsig);
	rc |= set_str(o, "confirmed_by", ev->confirmed_by);
	if (ev->refund_id != NULL) {
		char amt[32];

		amount_format(ev->refund_amount_fen, amt, sizeof(amt));
		rc |= set_str(o, "refund_id", ev->refund_id);
		rc |= set_str(o, "refund_amount", amt);
		rc |= set_int(o, "refund_amount_fen", ev->refund_amount_fen);
	}
	if (ev->test)
		rc |= json_object_set_new_nocheck(o, "test", json_true());
	if (rc != 0)
		goto out;
	/* Dump into the stack first: one allocation of the exact size. */
	n = json_dumpb(o, stackbuf, sizeof(stackbuf), JSON_COMPACT);
	if (n == 0 || (out = malloc(n + 1)) == NULL)
		goto out;
	if (n <= sizeof(stackbuf))
		memcpy(out, stackbuf, n);
	else if (json_dumpb(o, out, n, JSON_COMPACT) != n) {
		free(out);
		out = NULL;
		goto out;
	}
	out[n] = '\0';
out:
	json_decref(unsig);
	json_decref(raw);
	json_decref(o);
	return out;
}
