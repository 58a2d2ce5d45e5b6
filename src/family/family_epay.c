/* Epay / 易支付 and compatibles (SPEC §2.1). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "crypto.h"
#include "family.h"
#include "log.h"
#include "testcb.h"

/* Defined at the end of the file; its verify names events by it. */
extern const struct family family_epay;

/* How far a V2 (RSA) notification's timestamp may be from our clock. */
#define EPAY_RSA_WINDOW 300
#define EPAY_SWEEP_PAGE 50 /* orders in a full sweep page */

static const char *const epay_unsigned[] = { "sign", "sign_type", NULL };

/* The MD5 signature a V1 platform puts on a callback. A V2 (RSA) callback
 * is signed with the platform's private key, which payrelay never holds. */
static int
epay_sign(const struct channel *ch, const struct params *p, char out[33])
{
	struct sbuf s;
	int rc = -1;

	if (ch->sign_type == SIGN_RSA)
		return -1;
	sbuf_init(&s);
	if (family_sign_string(p, epay_unsigned, SKIP_EMPTY, &s) == -1 ||
	    sbuf_add(&s, ch->key, ch->key_len) == -1 || crypto_md5_hex(s.p, s.len, out) == -1)
		goto out;
	rc = 0;
out:
	if (s.p != NULL)
		explicit_bzero(s.p, s.len);
	sbuf_free(&s);
	return rc;
}

static enum verdict
epay_check_signature(const struct channel *ch, const struct params *p, const char *sign)
{
	struct sbuf s;
	char md5[33];
	enum verdict v = VERDICT_CRYPTO;

	sbuf_init(&s);
	if (ch->sign_type == SIGN_RSA) {
		if (family_sign_string(p, epay_unsigned, SKIP_EMPTY | SKIP_BLANK, &s) == -1)
			goto out;
		switch (crypto_rsa_sha256_verify(ch->platform_key, s.p ? s.p : "", s.len, sign,
		    strlen(sign))) {
		case 1:
			v = VERDICT_OK;
			break;
		case 0:
			v = VERDICT_BAD_SIGNATURE;
			break;
		default:
			break; /* the library failed: never a pass */
		}
	} else {
		if (epay_sign(ch, p, md5) == -1)
			goto out;
		v = family_hex_equal(md5, sign) ? VERDICT_OK : VERDICT_BAD_SIGNATURE;
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
	/* What names the payment (SPEC §2.5); amounts apart. */
	static const char *const ids[] = { "pid", "trade_no", "out_trade_no", "trade_status",
		NULL };
	static const char *const amounts[] = { "money", NULL };
	static const char *const naming[] = { "pid", "trade_no", "out_trade_no", "trade_status",
		"money", NULL };
	const char *sign, *sign_type, *status;
	uint64_t mask;
	enum verdict v;

	if ((v = family_check_params(p)) != VERDICT_OK)
		return v;
	/* What the signing string leaves out is not covered: never read from. */
	mask = family_unsigned_mask(p, epay_unsigned,
	    ch->sign_type == SIGN_RSA ? SKIP_EMPTY | SKIP_BLANK : SKIP_EMPTY);
	sign = params_value(p, "sign");
	if (sign == NULL || *sign == '\0')
		return VERDICT_MISSING_FIELD;
	if ((v = family_require(p, mask, ids, amounts)) != VERDICT_OK)
		return v;
	/* name, param and newer free-text fields may hold '&' and '=' (SPEC
	 * §2.1), but never one of the fields that name the payment: with each
	 * of those once in the signed string, and every other field sorted
	 * between them, no re-cut moves a payment field (docs/guarantees.md). */
	if ((v = family_unambiguous(p, mask, naming)) != VERDICT_OK)
		return v;
	/* The algorithm comes from the channel, never from the request. */
	sign_type = params_value(p, "sign_type");
	if (sign_type != NULL && *sign_type != '\0' &&
	    strcasecmp(sign_type, ch->sign_type == SIGN_RSA ? "RSA" : "MD5") != 0)
		return VERDICT_SIGN_TYPE;
	if (strcmp(params_value(p, "pid"), ch->merchant_id) != 0)
		return VERDICT_WRONG_MERCHANT;
	if ((v = epay_check_signature(ch, p, sign)) != VERDICT_OK)
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
	ev->method = family_signed(p, mask, "type");
	ev->subject = family_signed(p, mask, "name");
	family_passthrough(p, mask, "param", ev);
	ev->gateway_time = family_signed(p, mask, "endtime");
	ev->unsigned_mask = mask;
	return family_finish(ch, p, ev) == 0 ? VERDICT_OK : VERDICT_CRYPTO;
}

/* ---- polling (SPEC §2.1) --------------------------------------------- */

/* GET {api_base}/api.php?act=ACT&pid=..&key=..{tail}: the URL holds the
 * key, so it is wiped wherever it is dropped. */
static int
epay_api_url(const struct channel *ch, const char *act, const struct sbuf *tail,
    struct poll_query *q)
{
	struct sbuf qs, url;
	int rc = -1;

	memset(q, 0, sizeof(*q));
	sbuf_init(&qs);
	sbuf_init(&url);
	if (family_form_add(&qs, "act", act) == -1 ||
	    family_form_add(&qs, "pid", ch->merchant_id) == -1 ||
	    family_form_add(&qs, "key", ch->key) == -1 ||
	    (tail->len > 0 &&
		(sbuf_addc(&qs, '&') == -1 || sbuf_add(&qs, tail->p, tail->len) == -1)) ||
	    sbuf_printf(&url, "%s/api.php?%s", ch->api_base, qs.p) == -1)
		goto out;
	q->method = "GET";
	q->url = sbuf_steal(&url);
	rc = q->url == NULL ? -1 : 0;
out:
	if (qs.p != NULL)
		explicit_bzero(qs.p, qs.len);
	if (url.p != NULL)
		explicit_bzero(url.p, url.len);
	sbuf_free(&qs);
	sbuf_free(&url);
	return rc;
}

static int
epay_poll_query(const struct channel *ch, const char *out_trade_no, struct poll_query *q)
{
	struct sbuf t;
	int rc = -1;

	sbuf_init(&t);
	if (family_form_add(&t, "out_trade_no", out_trade_no) == -1)
		goto out;
	rc = epay_api_url(ch, "order", &t, q);
out:
	sbuf_free(&t);
	return rc;
}

/* The sweep (SPEC §2.1): page N (from 1) of the recent orders. */
static int
epay_sweep_query(const struct channel *ch, int page, struct poll_query *q)
{
	char limit[16], pg[16], offset[32];
	struct sbuf t;
	int rc = -1;

	memset(q, 0, sizeof(*q));
	if (page < 1)
		return -1;
	snprintf(limit, sizeof(limit), "%d", EPAY_SWEEP_PAGE);
	snprintf(pg, sizeof(pg), "%d", page);
	snprintf(offset, sizeof(offset), "%lld", ((long long)page - 1) * EPAY_SWEEP_PAGE);
	sbuf_init(&t);
	/* Platforms differ on page vs offset: send both. */
	if (family_form_add(&t, "limit", limit) == -1 || family_form_add(&t, "page", pg) == -1 ||
	    family_form_add(&t, "offset", offset) == -1)
		goto out;
	rc = epay_api_url(ch, "orders", &t, q);
out:
	sbuf_free(&t);
	return rc;
}

/* One order object of an answer, already in a->raw. `queried` is the
 * order asked about, or NULL in a sweep (then the answer must name it). */
static void
epay_poll_order(const struct channel *ch, const char *queried, struct poll_answer *a)
{
	const struct params *r = &a->raw;
	const char *got = params_value(r, "out_trade_no");
	const char *pid = params_value(r, "pid");
	const char *status = params_value(r, "status");
	const char *trade_no, *money;
	struct event *ev = &a->ev;
	int64_t fen;

	if (queried == NULL) {
		if (got == NULL || *got == '\0') {
			poll_answer_set(a, NULL, POLL_ERROR, "order has no out_trade_no");
			return;
		}
		queried = got;
	} else if (poll_answer_order(a, got, queried) == -1)
		return;
	if (pid != NULL && *pid != '\0' && strcmp(pid, ch->merchant_id) != 0) {
		poll_answer_set(a, ch, POLL_ERROR, "answer is for pid %s", pid);
		return;
	}
	if (status == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has no status");
		return;
	}
	if (strcmp(status, "0") == 0) {
		poll_answer_set(a, NULL, POLL_UNPAID, "unpaid");
		return;
	}
	if (strcmp(status, "2") == 0 || strcmp(status, "3") == 0) {
		poll_answer_set(a, NULL, POLL_OTHER, "%s",
		    status[0] == '2' ? "refunded" : "frozen");
		return;
	}
	if (strcmp(status, "1") != 0) {
		poll_answer_set(a, ch, POLL_ERROR, "unknown status \"%s\"", status);
		return;
	}

	trade_no = params_value(r, "trade_no");
	money = params_value(r, "money");
	if (trade_no == NULL || *trade_no == '\0') {
		poll_answer_set(a, NULL, POLL_ERROR, "paid answer has no trade_no");
		return;
	}
	if (family_amount(money, &fen) == -1) {
		poll_answer_set(a, ch, POLL_ERROR, "malformed money \"%s\"", money ? money : "");
		return;
	}
	if ((ev->out_trade_no = poll_answer_out_trade_no(a, got, queried)) == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "out of memory");
		return;
	}
	/* As epay_verify fills it for a TRADE_SUCCESS callback. */
	ev->source = SOURCE_POLL;
	ev->family = family_epay.name;
	ev->trade_no = trade_no;
	ev->type = EVENT_PAID;
	ev->status = "paid";
	ev->amount = money;
	ev->amount_fen = fen;
	ev->paid_amount = money;
	ev->paid_amount_fen = fen;
	ev->method = params_value(r, "type");
	ev->subject = params_value(r, "name");
	ev->passthrough = params_value(r, "param");
	ev->gateway_time = params_value(r, "endtime");
	if (family_finish(ch, r, ev) == -1) {
		poll_answer_set(a, NULL, POLL_ERROR, "the crypto library failed");
		return;
	}
	poll_answer_set(a, NULL, POLL_PAID, "paid");
}

/* The error message of an answer whose code is not 1. */
static void
epay_poll_refused(const struct channel *ch, const char *code, const struct params *r,
    struct poll_answer *a)
{
	const char *msg = params_value(r, "msg");

	poll_answer_set(a, ch, POLL_UNKNOWN, "code %s: %s", code, msg != NULL ? msg : "(no msg)");
}

static void
epay_poll_parse(const struct channel *ch, const char *out_trade_no, const char *body, size_t len,
    struct poll_answer *a)
{
	json_t *root;
	const char *code;

	if ((root = poll_answer_json(a, body, len)) == NULL)
		return;
	if (poll_answer_json_params(root, &a->raw) == -1) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has too many fields");
		goto out;
	}
	if ((code = params_value(&a->raw, "code")) == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has no code");
		goto out;
	}
	if (strcmp(code, "1") != 0) {
		epay_poll_refused(ch, code, &a->raw, a);
		goto out;
	}
	epay_poll_order(ch, out_trade_no, a);
out:
	json_decref(root);
}

static int
epay_sweep_parse(const struct channel *ch, const char *body, size_t len,
    struct poll_answer *answers, int max, bool *more)
{
	struct poll_answer scratch, *a = max > 0 ? &answers[0] : &scratch;
	struct params top;
	json_t *root, *data, *o;
	const char *code;
	size_t i, n;
	int written = -1;

	if (more != NULL)
		*more = false;
	poll_answer_init(a);
	params_init(&top);
	if ((root = poll_answer_json(a, body, len)) == NULL)
		goto out;
	if (poll_answer_json_params(root, &top) == -1) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has too many fields");
		goto out;
	}
	if ((code = params_value(&top, "code")) == NULL) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has no code");
		goto out;
	}
	if (strcmp(code, "1") != 0) {
		epay_poll_refused(ch, code, &top, a);
		goto out;
	}
	data = json_object_get(root, "data");
	if (json_is_null(data)) {
		written = 0; /* some platforms: no orders, no array */
		goto out;
	}
	if (!json_is_array(data)) {
		poll_answer_set(a, NULL, POLL_ERROR, "answer has no data array");
		goto out;
	}
	n = json_array_size(data);
	for (i = 0, written = 0; i < n && written < max; i++, written++) {
		a = &answers[written];
		if (written > 0)
			poll_answer_init(a);
		o = json_array_get(data, i);
		if (!json_is_object(o))
			poll_answer_set(a, NULL, POLL_ERROR, "order %zu is not an object", i);
		else if (poll_answer_json_params(o, &a->raw) == -1)
			poll_answer_set(a, NULL, POLL_ERROR, "order %zu has too many fields", i);
		else
			epay_poll_order(ch, NULL, a);
	}
	if (more != NULL)
		*more = n == EPAY_SWEEP_PAGE;
out:
	/* On -1, answers[0] holds a state and a detail but nothing to free. */
	params_free(&top);
	json_decref(root);
	return written;
}

static void
epay_config_warn(const struct channel *ch, const char *file, int confirm_line)
{
	(void)file;
	(void)confirm_line;
	/* The query API takes the merchant key in the query string. */
	if (ch->api_base != NULL && strncasecmp(ch->api_base, "http://", 7) == 0)
		log_warnx("epay api_base is plain http: every poll sends the channel "
			  "key in clear, use https://",
		    "channel=%s", ch->name);
}

/* The test callback (payrelayctl send-test). */
static int
epay_test_params(const struct channel *ch, const struct testcb_spec *t, struct params *p,
    const char **why)
{
	int rc = 0;

#define SET(n, v) (rc |= params_set(p, (n), (v), strlen(v)))
	SET("pid", ch->merchant_id);
	SET("trade_no", t->trade_no);
	SET("out_trade_no", t->out_trade_no);
	SET("type", "alipay");
	SET("name", "payrelay send-test");
	SET("money", t->amount);
	SET("trade_status", t->status != NULL ? t->status : "TRADE_SUCCESS");
	SET("param", "payrelay-test");
	SET("sign_type", "MD5");
#undef SET
	if (rc != 0)
		*why = "out of memory";
	return rc != 0 ? -1 : 0;
}

/* ---- the gateway client: refund, account, settlements (SPEC §10.3) ---- */

/* POST {api_base}/api.php?act=refund with pid key trade_no|out_trade_no
 * money (a form, as the three platforms' documents say). Both ids when
 * both are known: the platforms take trade_no then, which names the one
 * payment whose amount payrelay checked. */
static int
epay_refund_query(const struct channel *ch, const struct family_refund *r, struct poll_query *q)
{
	struct sbuf body, url;
	int rc = -1;

	memset(q, 0, sizeof(*q));
	if ((r->trade_no == NULL && r->out_trade_no == NULL) || r->money == NULL)
		return -1;
	sbuf_init(&body);
	sbuf_init(&url);
	if (family_form_add(&body, "pid", ch->merchant_id) == -1 ||
	    family_form_add(&body, "key", ch->key) == -1 ||
	    (r->trade_no != NULL && family_form_add(&body, "trade_no", r->trade_no) == -1) ||
	    (r->out_trade_no != NULL &&
		family_form_add(&body, "out_trade_no", r->out_trade_no) == -1) ||
	    family_form_add(&body, "money", r->money) == -1 ||
	    sbuf_printf(&url, "%s/api.php?act=refund", ch->api_base) == -1)
		goto out;
	q->method = "POST";
	q->body_len = body.len;
	q->body = sbuf_steal(&body);
	q->url = sbuf_steal(&url);
	if (q->body == NULL || q->url == NULL) {
		poll_query_free(q);
		goto out;
	}
	rc = 0;
out:
	/* The body holds the key. */
	if (body.p != NULL)
		explicit_bzero(body.p, body.len);
	sbuf_free(&body);
	sbuf_free(&url);
	return rc;
}

/* GET {api_base}/api.php?act=query&pid=..&key=.. */
static int
epay_account_query(const struct channel *ch, struct poll_query *q)
{
	struct sbuf none;

	sbuf_init(&none);
	return epay_api_url(ch, "query", &none, q);
}

/* GET {api_base}/api.php?act=settle&pid=..&key=.. */
static int
epay_settle_query(const struct channel *ch, struct poll_query *q)
{
	struct sbuf none;

	sbuf_init(&none);
	return epay_api_url(ch, "settle", &none, q);
}

/* `v`'s text (poll_answer_json_text) with the channel's key and every
 * secret masked; NULL for arrays, objects or no memory. The caller frees
 * the result. */
static char *
epay_text(const struct channel *ch, const json_t *v)
{
	struct sbuf b;

	sbuf_init(&b);
	if (poll_answer_json_text(v, &b) == -1 || sbuf_add(&b, "", 0) == -1) {
		sbuf_free(&b);
		return NULL;
	}
	if (ch->key != NULL)
		b.len = config_mask_text(b.p, b.len, ch->key, ch->key_len);
	b.len = config_mask_secrets_n(config_masking(), b.p, b.len);
	b.p[b.len] = '\0';
	return sbuf_steal(&b);
}

/* A member name of an answer, masked as epay_text masks values: a platform
 * that echoes what it was sent may echo the key anywhere. NULL for no
 * memory; the caller frees the result. */
static char *
epay_name(const struct channel *ch, const char *k)
{
	struct sbuf b;

	sbuf_init(&b);
	if (sbuf_adds(&b, k) == -1) {
		sbuf_free(&b);
		return NULL;
	}
	if (ch->key != NULL)
		b.len = config_mask_text(b.p, b.len, ch->key, ch->key_len);
	b.len = config_mask_secrets_n(config_masking(), b.p, b.len);
	b.p[b.len] = '\0';
	return sbuf_steal(&b);
}

/* A scalar member as a JSON value to pass on: a string (masked), or an
 * integer when the text is plain digits and `numeric`. NULL when missing. */
static json_t *
epay_pass(const struct channel *ch, const json_t *obj, const char *name, bool numeric)
{
	const json_t *v = json_object_get(obj, name);
	json_t *out = NULL;
	char *t, *end;
	long long n;

	if (v == NULL || json_is_null(v) || (t = epay_text(ch, v)) == NULL)
		return NULL;
	if (numeric && t[0] >= '0' && t[0] <= '9' && strlen(t) < 18) {
		n = strtoll(t, &end, 10);
		if (*end == '\0')
			out = json_integer(n);
	}
	if (out == NULL)
		out = json_string(t);
	free(t);
	return out;
}

/* The part every answer of api.php shares: a JSON object with `code` (1:
 * done) and `msg`. Sets a->outcome, a->code, a->msg, a->raw (the scalar
 * fields but `key`, masked). Returns the parsed object when code is 1
 * (the caller json_decref()s it), else NULL. */
static json_t *
epay_client_answer(const struct channel *ch, const char *what, const char *body, size_t len,
    struct family_answer *a)
{
	json_t *root, *v;
	const char *k;
	char *code = NULL, *t, *name;
	int rc = 0;

	a->outcome = FAMILY_ANSWER_GARBAGE;
	root = json_loadb(body != NULL ? body : "", len, JSON_DECODE_ANY, NULL);
	if (!json_is_object(root)) {
		snprintf(a->detail, sizeof(a->detail), "%s answer is not a JSON object", what);
		goto fail;
	}
	json_object_foreach(root, k, v)
	{
		if (strcmp(k, "key") == 0 || json_is_object(v) || json_is_array(v))
			continue;
		if (a->raw.n >= FORM_MAX_PARAMS || (t = epay_text(ch, v)) == NULL) {
			rc = -1;
			break;
		}
		if ((name = epay_name(ch, k)) == NULL) {
			free(t);
			rc = -1;
			break;
		}
		rc |= params_set(&a->raw, name, t, strlen(t));
		free(name);
		free(t);
	}
	if (rc != 0) {
		snprintf(a->detail, sizeof(a->detail), "%s answer has too many fields", what);
		goto fail;
	}
	if ((v = json_object_get(root, "code")) == NULL || (code = epay_text(ch, v)) == NULL ||
	    *code == '\0') {
		snprintf(a->detail, sizeof(a->detail), "%s answer has no code", what);
		goto fail;
	}
	poll_answer_masked_copy(ch, code, a->code, sizeof(a->code));
	poll_answer_masked_copy(ch, params_value(&a->raw, "msg"), a->msg, sizeof(a->msg));
	if (strcmp(code, "1") != 0) {
		a->outcome = FAMILY_ANSWER_REFUSED;
		snprintf(a->detail, sizeof(a->detail), "%s refused: code %.31s: %.100s", what,
		    a->code, a->msg[0] != '\0' ? a->msg : "(no msg)");
		goto fail;
	}
	free(code);
	a->outcome = FAMILY_ANSWER_OK;
	snprintf(a->detail, sizeof(a->detail), "%s done", what);
	return root;
fail:
	free(code);
	json_decref(root);
	return NULL;
}

static void
epay_refund_parse(const struct channel *ch, const char *body, size_t len, struct family_answer *a)
{
	json_t *root = epay_client_answer(ch, "refund", body, len, a);

	if (root == NULL)
		return;
	a->data = json_pack("{s:s}", "msg", a->msg);
	json_decref(root);
	if (a->data == NULL) {
		a->outcome = FAMILY_ANSWER_GARBAGE;
		snprintf(a->detail, sizeof(a->detail), "out of memory");
	}
}

/* Sets `name` of `o` to `v` (stolen) when v is not NULL. */
static int
epay_set(json_t *o, const char *name, json_t *v)
{
	return v == NULL ? 0 : json_object_set_new(o, name, v);
}

/* act=query: the documented fields, renamed for people, the balance also
 * in fen. Only named fields are copied: the key the platform echoes (and
 * whatever else a platform adds) is never passed on. */
static void
epay_account_parse(const struct channel *ch, const char *body, size_t len, struct family_answer *a)
{
	static const char *const settle_methods[] = { NULL, "alipay", "wxpay", "qqpay", "bank" };
	json_t *root = epay_client_answer(ch, "account", body, len, a), *o, *active, *type;
	const char *pid = params_value(&a->raw, "pid");
	const char *money = params_value(&a->raw, "money");
	int64_t fen;
	int rc = 0;

	if (root == NULL)
		return;
	if (pid != NULL && *pid != '\0' && strcmp(pid, ch->merchant_id) != 0) {
		a->outcome = FAMILY_ANSWER_GARBAGE;
		snprintf(a->detail, sizeof(a->detail), "account answer is for another pid");
		goto out;
	}
	if ((o = json_object()) == NULL)
		goto oom;
	a->data = o;
	rc |= json_object_set_new(o, "merchant_id", json_string(ch->merchant_id));
	active = epay_pass(ch, root, "active", true);
	if (json_is_integer(active))
		rc |= json_object_set_new(o, "status",
		    json_string(json_integer_value(active) == 1 ? "active" : "banned"));
	rc |= epay_set(o, "active", active);
	if (money != NULL) {
		rc |= json_object_set_new(o, "balance", json_string(money));
		rc |= json_object_set_new(o, "balance_fen",
		    family_amount(money, &fen) == 0 ? json_integer(fen) : json_null());
	}
	type = epay_pass(ch, root, "type", true);
	if (json_is_integer(type) && json_integer_value(type) >= 1 && json_integer_value(type) <= 4)
		rc |= json_object_set_new(o, "settle_method",
		    json_string(settle_methods[json_integer_value(type)]));
	rc |= epay_set(o, "settle_type", type);
	rc |= epay_set(o, "settle_account", epay_pass(ch, root, "account", false));
	rc |= epay_set(o, "settle_name", epay_pass(ch, root, "username", false));
	rc |= epay_set(o, "orders", epay_pass(ch, root, "orders", true));
	rc |= epay_set(o, "orders_today", epay_pass(ch, root, "order_today", true));
	rc |= epay_set(o, "orders_yesterday", epay_pass(ch, root, "order_lastday", true));
	if (rc == 0)
		goto out;
oom:
	a->outcome = FAMILY_ANSWER_GARBAGE;
	snprintf(a->detail, sizeof(a->detail), "out of memory");
out:
	json_decref(root);
}

/* act=settle: `data` is a list of settlement records, whose fields the
 * documents do not give: each record's scalar fields are passed on as
 * strings (masked), but for `key`, with money_fen beside a money that
 * parses. No data (or null): none. */
static void
epay_settle_parse(const struct channel *ch, const char *body, size_t len, struct family_answer *a)
{
	json_t *root = epay_client_answer(ch, "settlements", body, len, a), *data, *list, *r, *v;
	const char *k;
	size_t i;
	int64_t fen;
	int rc = 0;

	if (root == NULL)
		return;
	data = json_object_get(root, "data");
	if (data != NULL && !json_is_null(data) && !json_is_array(data)) {
		a->outcome = FAMILY_ANSWER_GARBAGE;
		snprintf(a->detail, sizeof(a->detail), "settlements answer has no data array");
		goto out;
	}
	if ((list = json_array()) == NULL ||
	    (a->data = json_pack("{s:o}", "settlements", list)) == NULL)
		goto oom;
	json_array_foreach(data, i, r)
	{
		json_t *o;

		if (!json_is_object(r))
			continue;
		if ((o = json_object()) == NULL || json_array_append_new(list, o) == -1)
			goto oom;
		json_object_foreach(r, k, v)
		{
			char *t, *name;

			if (strcmp(k, "key") == 0 || json_is_object(v) || json_is_array(v) ||
			    json_is_null(v))
				continue;
			if ((t = epay_text(ch, v)) == NULL)
				goto oom;
			if ((name = epay_name(ch, k)) == NULL) {
				free(t);
				goto oom;
			}
			rc |= json_object_set_new(o, name, json_string(t));
			if (strcmp(k, "money") == 0 && family_amount(t, &fen) == 0)
				rc |= json_object_set_new(o, "money_fen", json_integer(fen));
			free(name);
			free(t);
		}
	}
	if (rc == 0)
		goto out;
oom:
	a->outcome = FAMILY_ANSWER_GARBAGE;
	snprintf(a->detail, sizeof(a->detail), "out of memory");
out:
	json_decref(root);
}

/* ---- creating a payment (SPEC §10.1) ----------------------------------- */

/* mapi.php (api) and submit.php (redirect) take the same signed fields;
 * mapi.php adds clientip and device. Sent in this order, signed sorted. */
static const char *const epay_create_fields[] = { "pid", "type", "out_trade_no", "notify_url",
	"return_url", "name", "money", "clientip", "device", "param", NULL };

/* The form (k=v&..., URL-encoded) of a payment, with sign and sign_type:
 * the caller wipes and frees `form` (the key is not in it, but the
 * signature over it is as good as a request). Returns 0, or -1 with *why
 * as create_request's. */
static int
epay_create_form(const struct channel *ch, const struct pay_request *pr, bool api,
    struct sbuf *form, const char **why)
{
	const char *device = pr->device != NULL ? pr->device : ch->device;
	const char *name =
	    pr->subject != NULL && *pr->subject != '\0' ? pr->subject : pr->out_trade_no;
	const char *const *f;
	struct params p;
	char sign[33];
	int rc = -1;

	*why = NULL;
	if (ch->sign_type == SIGN_RSA) {
		*why = "this epay channel is RSA (V2): its requests are signed with the "
		       "merchant's private key, which payrelay does not hold";
		return -1;
	}
	if (pr->product_id != NULL || pr->fields != NULL) {
		*why = "product_id and fields are gatepay's: an epay payment has an amount";
		return -1;
	}
	if (pr->amount == NULL) {
		*why = "amount is required";
		return -1;
	}
	if (pr->method == NULL || *pr->method == '\0') {
		*why = "method is required: the epay payment type (alipay, wxpay, qqpay, ...)";
		return -1;
	}
	params_init(&p);
#define SET(n, v) ((v) != NULL && *(v) != '\0' && params_set(&p, (n), (v), strlen(v)) == -1)
	if (SET("pid", ch->merchant_id) || SET("type", pr->method) ||
	    SET("out_trade_no", pr->out_trade_no) || SET("notify_url", pr->notify_url) ||
	    SET("return_url", pr->return_url) || SET("name", name) || SET("money", pr->amount) ||
	    SET("param", pr->param))
		goto out;
	/* mapi.php wants the payer's address (any will do on most platforms)
	 * and the device; seed 003 answers an error without device=jump, which
	 * the channel's `device` key sets once for all. */
	if (api &&
	    (SET("clientip", pr->client_ip != NULL ? pr->client_ip : "127.0.0.1") ||
		SET("device", device)))
		goto out;
#undef SET
	if (epay_sign(ch, &p, sign) == -1)
		goto out;
	for (f = epay_create_fields; *f != NULL; f++) {
		const char *v = params_value(&p, *f);

		if (v != NULL && family_form_add(form, *f, v) == -1)
			goto out;
	}
	if (family_form_add(form, "sign", sign) == -1 ||
	    family_form_add(form, "sign_type", "MD5") == -1)
		goto out;
	rc = 0;
out:
	params_free(&p);
	return rc;
}

/* POST {api_base}/mapi.php. */
static int
epay_create_request(const struct channel *ch, const struct pay_request *pr, struct poll_query *q,
    const char **why)
{
	struct sbuf url, body;
	int rc = -1;

	memset(q, 0, sizeof(*q));
	sbuf_init(&url);
	sbuf_init(&body);
	if (epay_create_form(ch, pr, true, &body, why) == -1)
		goto out;
	if (sbuf_printf(&url, "%s/mapi.php", ch->api_base) == -1)
		goto out;
	q->method = "POST";
	q->body_len = body.len;
	q->url = sbuf_steal(&url);
	q->body = sbuf_steal(&body);
	if (q->url == NULL || q->body == NULL) {
		poll_query_free(q);
		goto out;
	}
	rc = 0;
out:
	sbuf_free(&url);
	sbuf_free(&body);
	return rc;
}

/* {api_base}/submit.php?...: the page the browser is sent to (GET works on
 * every platform, though the documents prefer a POSTed form). */
static int
epay_create_redirect(const struct channel *ch, const struct pay_request *pr, char **url,
    const char **why)
{
	struct sbuf form, u;
	int rc = -1;

	*url = NULL;
	sbuf_init(&form);
	sbuf_init(&u);
	if (epay_create_form(ch, pr, false, &form, why) == -1)
		goto out;
	if (sbuf_printf(&u, "%s/submit.php?%s", ch->api_base, form.p) == -1)
		goto out;
	if ((*url = sbuf_steal(&u)) != NULL)
		rc = 0;
out:
	sbuf_free(&form);
	sbuf_free(&u);
	return rc;
}

/* {"code":1,"msg":..,"trade_no":..,"payurl"|"qrcode"|"urlscheme":..}; any
 * other code is an error with msg. */
static void
epay_create_parse(const struct channel *ch, const char *body, size_t len, struct pay_result *r)
{
	static const struct {
		const char *name;
		enum pay_url_kind kind;
	} kinds[] = { { "payurl", PAY_URL }, { "qrcode", PAY_QRCODE },
		{ "urlscheme", PAY_URLSCHEME } };
	struct params a;
	const char *code, *msg, *v;
	json_error_t jerr;
	json_t *root;
	size_t i;

	params_init(&a);
	root = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(root) || poll_answer_json_params(root, &a) == -1) {
		pay_result_error(r, "", "the answer is not a JSON object");
		goto out;
	}
	code = params_value(&a, "code");
	msg = params_value(&a, "msg");
	if (code == NULL || strcmp(code, "1") != 0) {
		pay_result_gateway(r, ch, code, msg);
		goto out;
	}
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if ((v = params_value(&a, kinds[i].name)) != NULL && *v != '\0') {
			r->kind = kinds[i].kind;
			if ((r->url = strdup(v)) == NULL) {
				pay_result_error(r, "", "out of memory");
				goto out;
			}
			break;
		}
	}
	if (r->url == NULL) {
		pay_result_error(r, "", "code 1 without payurl, qrcode or urlscheme");
		goto out;
	}
	if ((v = params_value(&a, "trade_no")) != NULL && *v != '\0' &&
	    (r->trade_no = strdup(v)) == NULL) {
		pay_result_free(r);
		pay_result_error(r, "", "out of memory");
		goto out;
	}
	r->ok = true;
out:
	params_free(&a);
	json_decref(root);
}

const struct family family_epay = {
	.name = "epay",
	.ack_body = "success",
	.caps = FAMILY_RSA | FAMILY_REFUND | FAMILY_RETURN | FAMILY_CREATE,
	.trade_id_field = "trade_no",
	.verify = epay_verify,
	.poll_query = epay_poll_query,
	.poll_parse = epay_poll_parse,
	.sign = epay_sign,
	.sweep_query = epay_sweep_query,
	.sweep_parse = epay_sweep_parse,
	.sweep_page = EPAY_SWEEP_PAGE,
	.config_warn = epay_config_warn,
	.test_params = epay_test_params,
	/* the gateway client (SPEC §10.3) */
	.refund_query = epay_refund_query,
	.refund_parse = epay_refund_parse,
	.account_query = epay_account_query,
	.account_parse = epay_account_parse,
	.settle_query = epay_settle_query,
	.settle_parse = epay_settle_parse,
	/* The return_url gets the notify's parameters and signature (epay-000
	 * 页面跳转通知): verified as a callback is. */
	.verify_return = epay_verify,
	.return_order_field = "out_trade_no",
	/* SPEC §10.1 */
	.create_request = epay_create_request,
	.create_parse = epay_create_parse,
	.create_redirect = epay_create_redirect,
};
