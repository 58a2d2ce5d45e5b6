/* The family tests' shared fixtures and reference helpers (family_ref.h). */
#include <check.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "config.h"
#include "crypto.h"
#include "event.h"
#include "family.h"
#include "family_ref.h"
#include "form.h"
#include "util.h"
#include "vectors.h"

/* ---- fixtures ---------------------------------------------------------- */

void
chan_init(struct channel *ch, const char *name, const char *family, enum sign_type st,
    const char *merchant_id, const char *key)
{
	memset(ch, 0, sizeof(*ch));
	ch->name = strdup(name);
	ch->family = family_find(family);
	ch->sign_type = st;
	ch->merchant_id = strdup(merchant_id);
	ch->key = strdup(key);
	ch->key_len = strlen(key);
	ck_assert_msg(ch->family != NULL, "family_find(\"%s\") = NULL", family);
	ck_assert(ch->name != NULL && ch->merchant_id != NULL && ch->key != NULL);
}

void
chan_free(struct channel *ch)
{
	free(ch->name);
	free(ch->merchant_id);
	free(ch->key);
	free(ch->api_base);
	free(ch->device);
	free(ch->return_to);
	crypto_pkey_free(ch->platform_key);
	memset(ch, 0, sizeof(*ch));
}

/* Replaces the channel's merchant_id / key (for the negative cases). */
void
chan_set(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
	ck_assert_ptr_nonnull(*field);
}

void
pset(struct params *p, const char *name, const char *value)
{
	ck_assert_msg(params_set(p, name, value, strlen(value)) == 0, "params_set(%s)", name);
}

/* The vector's params (an object of strings) into a fresh `p`, but `drop`. */
void
params_from(struct params *p, json_t *obj, const char *drop)
{
	const char *k;
	json_t *v;

	ck_assert_msg(json_is_object(obj), "vector has no params object");
	params_init(p);
	json_object_foreach(obj, k, v)
	{
		ck_assert_msg(json_is_string(v), "vector param %s is not a string", k);
		if (drop != NULL && strcmp(k, drop) == 0)
			continue;
		ck_assert_int_eq(params_set(p, k, json_string_value(v), json_string_length(v)), 0);
	}
}

enum verdict
run(const struct channel *ch, const struct params *p, time_t now, struct event *ev)
{
	memset(ev, 0, sizeof(*ev));
	return ch->family->verify(ch, p, now, ev);
}

void
expect(const struct channel *ch, const struct params *p, time_t now, enum verdict want,
    const char *what)
{
	struct event ev;
	enum verdict got = run(ch, p, now, &ev);

	ck_assert_msg(got == want, "%s (%s): verdict %s, want %s", what, ch->family->name,
	    verdict_str(got), verdict_str(want));
}

/* ---- reference signers, from SPEC §2 ------------------------------------ */

int
cmp_param_name(const void *a, const void *b)
{
	const struct param *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* PHP trim()'s set: " \t\n\r\0\x0B". */
int
php_blank(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\0' && c != '\v')
			return 0;
	}
	return 1;
}

int
excluded(const char *name, const char *const *exclude)
{
	for (; *exclude != NULL; exclude++)
		if (strcmp(name, *exclude) == 0)
			return 1;
	return 0;
}

/* "k1=v1&k2=v2" sorted by name in byte order; the caller frees it. */
char *
ref_sign_string(const struct params *p, const char *const *exclude, unsigned skip, size_t *lenp)
{
	const struct param **v = calloc(p->n + 1, sizeof(*v));
	size_t n = 0, len = 0, i, off = 0;
	char *s;

	ck_assert_ptr_nonnull(v);
	for (i = 0; i < p->n; i++) {
		const struct param *pr = &p->v[i];

		if (excluded(pr->name, exclude))
			continue;
		if ((skip & SKIP_EMPTY) && pr->vlen == 0)
			continue;
		if ((skip & SKIP_ZERO) && pr->vlen == 1 && pr->value[0] == '0')
			continue;
		if ((skip & SKIP_BLANK) && php_blank(pr->value, pr->vlen))
			continue;
		v[n++] = pr;
		len += strlen(pr->name) + pr->vlen + 2;
	}
	qsort(v, n, sizeof(*v), cmp_param_name);
	s = malloc(len + 1);
	ck_assert_ptr_nonnull(s);
	for (i = 0; i < n; i++) {
		size_t nl = strlen(v[i]->name);

		if (i > 0)
			s[off++] = '&';
		memcpy(s + off, v[i]->name, nl);
		off += nl;
		s[off++] = '=';
		memcpy(s + off, v[i]->value, v[i]->vlen);
		off += v[i]->vlen;
	}
	s[off] = '\0';
	free(v);
	*lenp = off;
	return s;
}

/* md5 hex of a + b (b a C string). */
void
md5_concat(const char *a, size_t alen, const char *b, char out[33])
{
	size_t blen = strlen(b);
	char *buf = malloc(alen + blen + 1);

	ck_assert_ptr_nonnull(buf);
	memcpy(buf, a, alen);
	memcpy(buf + alen, b, blen);
	ck_assert_int_eq(crypto_md5_hex(buf, alen + blen, out), 0);
	free(buf);
}

/* Exact fen of a well-formed vector amount, independent of amount.c. */
int64_t
ref_fen(const char *s)
{
	int64_t v = 0;
	int decimals = -1;

	for (; *s != '\0'; s++) {
		if (*s == '.') {
			decimals = 0;
			continue;
		}
		ck_assert_msg(isdigit((unsigned char)*s), "ref_fen: bad vector amount");
		if (decimals >= 2) {
			ck_assert_msg(*s == '0', "ref_fen: bad vector amount");
			continue;
		}
		v = v * 10 + (*s - '0');
		if (decimals >= 0)
			decimals++;
	}
	for (decimals = decimals < 0 ? 0 : decimals; decimals < 2; decimals++)
		v *= 10;
	return v;
}

/* ---- what a verified callback must produce ------------------------------ */

void
check_event(const char *desc, const struct channel *ch, const struct event *ev,
    const struct want *w)
{
	char id[EVENT_ID_LEN + 1];
	const char *status = w->paid ? "paid" : w->raw_status;

	ck_assert_msg(ev->channel && strcmp(ev->channel, ch->name) == 0, "%s: channel", desc);
	ck_assert_msg(ev->family && strcmp(ev->family, ch->family->name) == 0, "%s: family %s",
	    desc, ev->family ? ev->family : "(null)");
	ck_assert_msg(ev->merchant_id && strcmp(ev->merchant_id, ch->merchant_id) == 0,
	    "%s: merchant_id", desc);
	ck_assert_msg(ev->trade_no && strcmp(ev->trade_no, w->trade_no) == 0,
	    "%s: trade_no %s, want %s", desc, ev->trade_no ? ev->trade_no : "(null)", w->trade_no);
	ck_assert_msg(ev->out_trade_no && strcmp(ev->out_trade_no, w->out_trade_no) == 0,
	    "%s: out_trade_no %s, want %s", desc, ev->out_trade_no ? ev->out_trade_no : "(null)",
	    w->out_trade_no);
	ck_assert_msg(ev->status && strcmp(ev->status, status) == 0, "%s: status %s, want %s", desc,
	    ev->status ? ev->status : "(null)", status);
	ck_assert_msg(ev->type == (w->paid ? EVENT_PAID : EVENT_STATUS), "%s: type %s", desc,
	    event_type_str(ev->type));

	ck_assert_msg(ev->amount && strcmp(ev->amount, w->amount) == 0, "%s: amount %s, want %s",
	    desc, ev->amount ? ev->amount : "(null)", w->amount);
	ck_assert_msg(ev->amount_fen == ref_fen(w->amount),
	    "%s: amount_fen %" PRId64 ", want %" PRId64, desc, ev->amount_fen, ref_fen(w->amount));
	ck_assert_msg(ev->paid_amount && strcmp(ev->paid_amount, w->paid_amount) == 0,
	    "%s: paid_amount %s, want %s", desc, ev->paid_amount ? ev->paid_amount : "(null)",
	    w->paid_amount);
	ck_assert_msg(ev->paid_amount_fen == ref_fen(w->paid_amount),
	    "%s: paid_amount_fen %" PRId64 ", want %" PRId64, desc, ev->paid_amount_fen,
	    ref_fen(w->paid_amount));

	if (w->method != NULL)
		ck_assert_msg(ev->method && strcmp(ev->method, w->method) == 0,
		    "%s: method %s, want %s", desc, ev->method ? ev->method : "(null)", w->method);
	if (w->subject != NULL)
		ck_assert_msg(ev->subject && strcmp(ev->subject, w->subject) == 0,
		    "%s: subject %s, want %s", desc, ev->subject ? ev->subject : "(null)",
		    w->subject);
	if (w->passthrough != NULL && *w->passthrough != '\0')
		ck_assert_msg(ev->passthrough && strcmp(ev->passthrough, w->passthrough) == 0,
		    "%s: passthrough %s, want %s", desc,
		    ev->passthrough ? ev->passthrough : "(null)", w->passthrough);
	else
		ck_assert_msg(ev->passthrough == NULL || *ev->passthrough == '\0',
		    "%s: passthrough \"%s\" without a %s", desc, ev->passthrough,
		    w->passthrough_param);

	ck_assert_msg(ev->raw != NULL, "%s: raw not set", desc);
	ck_assert_msg(params_value(ev->raw, "out_trade_no") != NULL ||
		params_value(ev->raw, "out_order_id") != NULL ||
		params_value(ev->raw, "orderid") != NULL,
	    "%s: raw does not hold the received parameters", desc);

	event_make_id(id, ch->name, w->trade_no, status);
	ck_assert_msg(strcmp(ev->id, id) == 0, "%s: id %s, want %s", desc, ev->id, id);
}

/* ---- the table ---------------------------------------------------------- */

/* ---- shared helpers ----------------------------------------------------- */

void
assert_sign_string(const struct params *p, const char *const *exclude, unsigned skip,
    const char *want)
{
	struct sbuf b;

	sbuf_init(&b);
	ck_assert_int_eq(family_sign_string(p, exclude, skip, &b), 0);
	ck_assert_msg(b.len == strlen(want) && (b.len == 0 || memcmp(b.p, want, b.len) == 0),
	    "sign string \"%.*s\", want \"%s\"", (int)b.len, b.len ? b.p : "", want);
	sbuf_free(&b);
}

void
flip_hex_digit(char *s, size_t i)
{
	s[i] = s[i] == '0' ? '1' : '0';
}

/* ---- polls --------------------------------------------------------------- */

void
poll_chan_init(struct channel *ch, const char *name, const char *family, const char *merchant_id,
    const char *key)
{
	chan_init(ch, name, family, SIGN_MD5, merchant_id, key);
	ch->api_base = strdup(POLL_API);
	ck_assert_ptr_nonnull(ch->api_base);
}

/* Asserts what every detail must be: one short line, never the key. */
void
check_detail(const struct channel *ch, const struct poll_answer *a)
{
	size_t n = strnlen(a->detail, sizeof(a->detail));

	ck_assert_msg(n < sizeof(a->detail), "detail is not NUL-terminated");
	ck_assert_msg(strchr(a->detail, '\n') == NULL && strchr(a->detail, '\r') == NULL,
	    "detail is more than one line: %s", a->detail);
	ck_assert_msg(strstr(a->detail, ch->key) == NULL, "detail holds the key: %s", a->detail);
}

/* Parses `body` for `out` into a fresh `a`. */
enum poll_state
parse(const struct channel *ch, const char *out, const char *body, struct poll_answer *a)
{
	poll_answer_init(a);
	ch->family->poll_parse(ch, out, body, body != NULL ? strlen(body) : 0, a);
	check_detail(ch, a);
	return a->state;
}

void
expect_state(const struct channel *ch, const char *out, const char *body, enum poll_state want,
    const char *detail_has)
{
	struct poll_answer a;
	enum poll_state got = parse(ch, out, body, &a);

	ck_assert_msg(got == want, "%s: %s answer %s: state %s (%s), want %s", ch->family->name,
	    out, body, poll_state_str(got), a.detail, poll_state_str(want));
	if (detail_has != NULL)
		ck_assert_msg(strstr(a.detail, detail_has) != NULL, "detail \"%s\" lacks \"%s\"",
		    a.detail, detail_has);
	poll_answer_free(&a);
}

/* The id verify() gives the vector's callback, on channel `ch`. */
void
callback_id(const struct channel *ch, json_t *vec, char id[EVENT_ID_LEN + 1])
{
	struct params p;
	struct event ev;
	enum verdict v;

	params_from(&p, json_object_get(vec, "params"), NULL);
	memset(&ev, 0, sizeof(ev));
	v = ch->family->verify(ch, &p, time(NULL), &ev);
	ck_assert_msg(v == VERDICT_OK, "vector \"%s\" does not verify: %s",
	    vectors_str(vec, "description"), verdict_str(v));
	memcpy(id, ev.id, EVENT_ID_LEN + 1);
	params_free(&p);
}

char *
dump(json_t *o)
{
	char *s;

	ck_assert_ptr_nonnull(o);
	s = json_dumps(o, JSON_COMPACT);
	ck_assert_ptr_nonnull(s);
	json_decref(o);
	return s;
}

/* ---- creating a payment (SPEC §10.1) ------------------------------------ */

void
pay_request_init(struct pay_request *pr, const char *out_trade_no, const char *amount)
{
	memset(pr, 0, sizeof(*pr));
	pr->out_trade_no = out_trade_no;
	pr->amount = amount;
	pr->notify_url = "https://relay.example/notify/shop";
	pr->return_url = "https://relay.example/return/shop";
	pr->now = 1700000000; /* 2023-11-14 22:13:20 UTC */
}

void
form_params(struct params *p, const char *form)
{
	params_init(p);
	ck_assert_ptr_nonnull(form);
	ck_assert_int_eq(form_decode(p, form, strlen(form)), FORM_OK);
}
