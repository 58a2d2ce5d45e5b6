/* Gateway families. Each family is one file (family_NAME.c) defining one
 * `struct family`: everything the rest of the code asks about a gateway's
 * protocol is in that struct, so a fourth family is one new file, one row
 * of family.c's table and one line of src/meson.build (docs/families.md). */
#ifndef PAYRELAY_FAMILY_H
#define PAYRELAY_FAMILY_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "event.h"
#include "form.h"
#include "poll_answer.h"
#include "util.h"

struct channel;
struct testcb_spec;
struct json_t;

/* A refund to ask the gateway for (SPEC §10.3). */
struct family_refund {
	const char *trade_no;     /* the gateway's trade id of the payment, or NULL */
	const char *out_trade_no; /* the merchant's order id, or NULL (not both NULL) */
	const char *money;        /* yuan, a canonical decimal ("1.50") */
};

/* What a gateway client call (refund, account, settlements) came to. */
enum family_outcome {
	FAMILY_ANSWER_OK,      /* done: the gateway said so (refund: it refunded) */
	FAMILY_ANSWER_REFUSED, /* the gateway answered an error code: nothing was done */
	FAMILY_ANSWER_GARBAGE, /* no usable answer: what the gateway did is not known */
};

/* A parsed gateway client answer. `code` and `msg` are the gateway's own
 * (REFUSED; OK may have a msg too), one line, with the channel's key and
 * every configured secret masked; `detail` says why for the log. */
struct family_answer {
	enum family_outcome outcome;
	char code[32];
	char msg[256];
	char detail[160];
	struct json_t *data; /* OK: what may be passed on (owned; never the key), else NULL */
	struct params raw;   /* the answer's scalar fields, the key masked (refund event's raw) */
};

void family_answer_init(struct family_answer *a);
void family_answer_free(struct family_answer *a);

/* Why a callback was refused. Every refusal is answered `fail`. */
enum verdict {
	VERDICT_OK = 0,
	VERDICT_MISSING_FIELD, /* a required parameter is absent or empty */
	VERDICT_BAD_SIGNATURE,
	VERDICT_SIGN_TYPE,      /* the request's sign_type differs from the channel's */
	VERDICT_WRONG_MERCHANT, /* pid / appkey / memberid is not the channel's */
	VERDICT_BAD_AMOUNT,     /* an amount that is not an exact decimal of fen */
	VERDICT_STALE,          /* a signed timestamp outside the allowed window */
	VERDICT_NOT_CANONICAL,  /* a field naming the payment is not canonical (SPEC §2.5) */
	VERDICT_NUL,            /* a NUL byte in a value */
	VERDICT_BAD_NAME,       /* a parameter name that is not a plain identifier */
	VERDICT_AMBIGUOUS,      /* the signed string can be cut into other fields (SPEC §2.5) */
	VERDICT_CRYPTO,         /* the crypto library failed: never a verdict on the callback */
};

/* A sentence for the log, and a short word for a metric label. */
const char *verdict_str(enum verdict v);
const char *verdict_label(enum verdict v);

/* What a family can do or needs, besides verifying callbacks: bits of
 * struct family's `caps`. config.c, poll.c and ingest.c ask these, never a
 * family's name. */
enum family_cap {
	/* sign_type = RSA is allowed: callbacks signed by the platform's key
	 * (platform_public_key_file), which payrelay cannot sign with. */
	FAMILY_RSA = 1 << 0,
	/* confirm = query is the default: the signature cannot be made
	 * unambiguous (SPEC §2.5), so turning it off is warned about. */
	FAMILY_CONFIRM_DEFAULT = 1 << 1,
	/* The gateway client (SPEC §10). */
	FAMILY_CREATE = 1 << 2, /* creates payments: create_request, create_parse */
	FAMILY_REFUND = 1 << 3, /* refunds them */
	FAMILY_RETURN = 1 << 4, /* verifies the browser's return */
};

/* ---- creating a payment (SPEC §10.1): what struct family's create_*
 * members take and give ------------------------------------------------ */

/* One payment to create. Every string is borrowed and NUL-terminated;
 * NULL means "not given". */
struct pay_request {
	const char *out_trade_no;
	const char *amount;  /* yuan as "12.34" (amount_format); NULL with product_id/fields */
	const char *method;  /* epay/gatepay `type`, payindex `pay_bankcode` */
	const char *subject; /* epay `name`, payindex `pay_productname` */
	const char *param; /* passthrough: epay `param`, gatepay `custom`, payindex `pay_attach` */
	const char *client_ip;  /* epay `clientip` */
	const char *device;     /* epay `device`: the caller's, else the channel's */
	const char *product_id; /* gatepay: stablepay instead of an amount */
	const char *fields;     /* gatepay: grouppay ("id:count,...") instead of an amount */
	const char *notify_url; /* {public_url}/notify/{channel} */
	const char *return_url; /* {public_url}/return/{channel} */
	time_t now;             /* wall clock (payindex pay_applydate) */
};

/* What the payer is sent to: the answer's member name (pay_url_kind_str). */
enum pay_url_kind { PAY_URL, PAY_QRCODE, PAY_URLSCHEME };

const char *pay_url_kind_str(enum pay_url_kind k);

/* A parsed create answer. ok: url (and trade_no when the gateway gives
 * one) are set; else code and msg say what the gateway said (or, with an
 * empty code, what was wrong with its answer), one line, with the
 * channel's key and every secret of config_masking() masked
 * (pay_result_gateway). */
struct pay_result {
	bool ok;
	enum pay_url_kind kind;
	char *url;      /* owned */
	char *trade_no; /* owned; NULL when the answer has none */
	char code[32];
	char msg[256];
};

void pay_result_free(struct pay_result *r);
/* Sets r->ok false, r->code and r->msg (cut to fit). */
void pay_result_error(struct pay_result *r, const char *code, const char *fmt, ...)
    PRINTF_LIKE(3, 4);
/* Sets r->ok false, and r->code and r->msg (NULL or "": "(no msg)") to what the
 * gateway said, as poll_answer_masked_copy copies them: the channel's key
 * and every secret masked whole before they are cut to fit. */
void pay_result_gateway(struct pay_result *r, const struct channel *ch, const char *code,
    const char *msg);

struct family {
	const char *name;
	const char *ack_body; /* what the gateway must read to stop retrying */
	unsigned caps;        /* enum family_cap bits */
	/* The callback parameter holding the gateway's trade id: logged
	 * with a refused callback. */
	const char *trade_id_field;
	/* Checks a callback against the channel and fills `ev` (borrowing from
	 * `p` and `ch`; id, type, status, amounts and the family-specific
	 * fields; received_ms and source are the caller's). `now` is wall-clock
	 * seconds, for signed timestamps. */
	enum verdict (*verify)(const struct channel *ch, const struct params *p, time_t now,
	    struct event *ev);
	/* Builds the query for one order (the channel has api_base). Returns
	 * 0 or -1 (out of memory). The caller frees q with poll_query_free. */
	int (*poll_query)(const struct channel *ch, const char *out_trade_no, struct poll_query *q);
	/* Parses the answer body (any HTTP status: the caller passes 2xx only)
	 * for `out_trade_no`. Always sets a->state; on POLL_PAID fills a->ev
	 * (source, received_ms are the caller's). Verifies what the family
	 * signs (payindex answers carry a sign). */
	void (*poll_parse)(const struct channel *ch, const char *out_trade_no, const char *body,
	    size_t len, struct poll_answer *a);
	/* Signs the callback `p` (its own sign, if any, left out) with the
	 * channel's key exactly as the gateway does: out gets the `sign`
	 * value as the gateway writes it (payrelayctl send-test). Returns 0,
	 * or -1 when the crypto library failed or the channel's callbacks are
	 * signed with a key payrelay does not hold (epay RSA). */
	int (*sign)(const struct channel *ch, const struct params *p, char out[33]);
	/* The sweep (sweep = on): the query for page N (from 1) of the recent
	 * orders (0 or -1, as poll_query), and its parser: at most `max`
	 * answers (each as poll_parse would give for that order; the caller
	 * inits and frees each), returning how many were written, or -1 when
	 * the page is an error or garbage (answers[0].detail says why when
	 * max > 0); *more is set when the page was full. NULL when the
	 * gateway has no such list: then sweep = on is refused. */
	int (*sweep_query)(const struct channel *ch, int page, struct poll_query *q);
	int (*sweep_parse)(const struct channel *ch, const char *body, size_t len,
	    struct poll_answer *answers, int max, bool *more);
	int sweep_page; /* orders in a full sweep page */
	/* Warns about what a loaded channel of this family gives up or
	 * exposes, at every start and reload; `file` and `confirm_line` (of
	 * its confirm key, 0 when not given) are for the log. NULL: none. */
	void (*config_warn)(const struct channel *ch, const char *file, int confirm_line);
	/* Sets in `p` what the gateway sends for the test payment `t`
	 * (payrelayctl send-test), but for its sign: the field names of SPEC
	 * §2 and values that read as the test they are. Returns 0, or -1 with
	 * *why set (a static sentence for the operator). NULL: the family has
	 * no test callback. */
	int (*test_params)(const struct channel *ch, const struct testcb_spec *t, struct params *p,
	    const char **why);

	/* ---- the gateway client: refunds, account, settlements (SPEC §10.3).
	 * Each pair builds a request (0, or -1 when out of memory; the
	 * caller frees q with poll_query_free: it may hold the key) and
	 * parses its answer (any HTTP status: the caller passes 2xx only)
	 * into `a` (family_answer_init'ed by the caller). NULL: the family's
	 * gateway has no such API (refund_query set iff FAMILY_REFUND). ---- */
	int (*refund_query)(const struct channel *ch, const struct family_refund *r,
	    struct poll_query *q);
	void (*refund_parse)(const struct channel *ch, const char *body, size_t len,
	    struct family_answer *a);
	/* The merchant's account (epay act=query): a->data gets
	 * {"merchant_id","active","balance","balance_fen",...}, never the key. */
	int (*account_query)(const struct channel *ch, struct poll_query *q);
	void (*account_parse)(const struct channel *ch, const char *body, size_t len,
	    struct family_answer *a);
	/* The merchant's settlements (epay act=settle): a->data gets
	 * {"settlements": [...]}, never the key. */
	int (*settle_query)(const struct channel *ch, struct poll_query *q);
	void (*settle_parse)(const struct channel *ch, const char *body, size_t len,
	    struct family_answer *a);
	/* ---- the payer's return (SPEC §10.2), with caps FAMILY_RETURN ---- */
	/* Checks what the payer's browser brings back to /return/{channel}
	 * (the gateway's return_url / 同步通知 / pay_callbackurl) as verify
	 * checks a callback, and fills `ev` alike: the same payment gets the
	 * same event id as its notify. A payer holds the signed set, so the
	 * SPEC §2.5 checks apply in full. NULL: the family's returns are not
	 * verified, and every return of it is answered status=invalid. */
	enum verdict (*verify_return)(const struct channel *ch, const struct params *p, time_t now,
	    struct event *ev);
	/* The return parameter that names the merchant's order: an invalid
	 * return's redirect echoes it as the payer's (unproven) claim. */
	const char *return_order_field;
	/* ---- SPEC §10.1, creating a payment (FAMILY_CREATE; NULL otherwise) ----
	 * create_request builds the gateway call (URL, form body, signature)
	 * for `pr`; returns 0, or -1 with *why a static sentence for the
	 * caller (400: the request cannot be made for this channel, e.g. a
	 * missing method) or NULL (out of memory, crypto failure). The caller
	 * frees q with poll_query_free; its URL and body may hold the key.
	 * create_parse reads the answer body (any HTTP status) into r (the
	 * caller inits it to zero and frees it with pay_result_free).
	 * create_redirect (NULL: the family has no such page) builds the signed
	 * URL a browser is sent to without any call (epay submit.php): *url
	 * is the caller's to free; returns as create_request. */
	int (*create_request)(const struct channel *ch, const struct pay_request *pr,
	    struct poll_query *q, const char **why);
	void (*create_parse)(const struct channel *ch, const char *body, size_t len,
	    struct pay_result *r);
	int (*create_redirect)(const struct channel *ch, const struct pay_request *pr, char **url,
	    const char **why);
	/* ---- end of SPEC §10.1 ---- */
};

/* The family called `name`, or NULL. */
const struct family *family_find(const char *name);
/* The table: family_at(i) for i < family_count(), else NULL. */
size_t family_count(void);
const struct family *family_at(size_t i);
/* Writes the names of the families for which `has` is true (every family
 * when `has` is NULL) to out as "a", "a or b" or "a, b or c", for a
 * message; "" when none. */
void family_names(bool (*has)(const struct family *), char *out, size_t n);
/* Whether `f` (not NULL) allows sign_type = RSA, and sweep = on. */
bool family_rsa(const struct family *f);
bool family_sweeps(const struct family *f);
/* Whether `f` verifies the payer's return (FAMILY_RETURN and verify_return). */
bool family_returns(const struct family *f);

/* Shared signing helpers. */

/* Which parameters a sorted "k=v&k=v" signing string leaves out. */
enum skip_rule {
	SKIP_EMPTY = 1 << 0, /* value "" */
	SKIP_BLANK = 1 << 1, /* value only PHP trim() white space */
	SKIP_ZERO = 1 << 2,  /* value "0" (PHP empty()) */
};

/* Appends the parameters of `p`, but for those named in `exclude`
 * (NULL-terminated) and those `skip` rules out, sorted by name in byte
 * order, as k1=v1&k2=v2 to `out`. Returns 0 or -1. */
int family_sign_string(const struct params *p, const char *const *exclude, unsigned skip,
    struct sbuf *out) WUR;
/* Bit i set: p->v[i] is left out of that signing string (excluded by
 * name or skipped by `skip`), so the signature does not cover it. */
uint64_t family_unsigned_mask(const struct params *p, const char *const *exclude, unsigned skip);
/* The value of `name` when it was received and is covered by the signature
 * (its bit in `unsigned_mask` is clear), else NULL. Normalized fields are
 * filled from these only, but for passthrough (family_passthrough). */
const char *family_signed(const struct params *p, uint64_t unsigned_mask, const char *name);
/* SPEC §2.5 checks of what every family receives: no NUL byte in any
 * value, and every name a plain identifier ([A-Za-z0-9_-]: a name holding
 * '&' or '=' could move a boundary of a "k=v&k=v" signing string). */
enum verdict family_check_params(const struct params *p);
/* Sets ev->passthrough to the value of `name`, signed or not, and
 * ev->passthrough_unsigned when it is not (the event then says
 * "passthrough_signed": false). */
void family_passthrough(const struct params *p, uint64_t unsigned_mask, const char *name,
    struct event *ev);
/* Checks that every name of `ids` (NULL-terminated) is signed, non-empty
 * and canonical (printable ASCII without '&', '=', '%' or white space),
 * and every name of `amounts` signed and a canonical decimal ("0" or no
 * leading zero, then optionally '.' and 1-4 digits). MISSING_FIELD,
 * NOT_CANONICAL or BAD_AMOUNT, else OK. */
enum verdict family_require(const struct params *p, uint64_t unsigned_mask, const char *const *ids,
    const char *const *amounts);
/* A sorted "k=v&k=v" string joins values without escaping, so a signed
 * value holding "&NAME=" could be cut off into a field NAME. Checks that
 * no signed value holds "&NAME=" for a NAME of `names` (NULL-terminated):
 * then the string holds each of those fields once, where the field is, and
 * no re-cut can change their values. VERDICT_AMBIGUOUS or OK. */
enum verdict family_unambiguous(const struct params *p, uint64_t unsigned_mask,
    const char *const *names);
bool family_canonical_id(const char *s);
bool family_canonical_amount(const char *s);
/* True when `got` (hex, any case) equals the hex digest `want`
 * (constant time). */
bool family_hex_equal(const char *want, const char *got);
/* Fills the fields every family shares (channel, merchant_id, raw = p) and the id
 * from channel, trade_no and status. Each verify calls it on success.
 * Returns 0, or -1 when no id could be made (the crypto library failed). */
int family_finish(const struct channel *ch, const struct params *p, struct event *ev) WUR;
/* Appends name=value, URL-encoded as PHP's urlencode() does (space is
 * '+'), with a leading '&' unless `out` is empty. Returns 0 or -1. */
int family_form_add(struct sbuf *out, const char *name, const char *value) WUR;
/* Parses `s` into fen; NULL or invalid gives -1. */
int family_amount(const char *s, int64_t *fen) WUR;

#endif
