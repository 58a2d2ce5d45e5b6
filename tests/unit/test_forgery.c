/* What a signature proves (SPEC §2.5): someone holding genuine callbacks
 * re-cuts them without the key, and nothing they make may become another
 * payment; a failing crypto library refuses everything.
 *
 * The re-cut property test signs random genuine callbacks of each family
 * with small reference signers written here from the SPEC, then builds every
 * variant whose signed string is the same (a separator moved, neighbouring
 * fields merged or split) and asserts that verify() accepts none whose
 * payment (trade id, order id, amounts, status) differs. For gatepay, whose
 * plain concatenation cannot be made unambiguous, a variant may only differ
 * in what confirmation by query checks (trade id, order id, amount). */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/provider.h>

#include "config.h"
#include "crypto.h"
#include "event.h"
#include "family.h"
#include "form.h"
#include "util.h"
#include "vectors.h"

#define EPAY_KEY "k3y-of-the-epay-merchant"
#define GATEPAY_APPKEY "098f6bcd4621d373cade4e832627b4f6"
#define GATEPAY_SECRET "5ebe2294ecd0e0f08eab7690d2a6ee69"
#define PAYINDEX_KEY "t4ig5acnpx4fet4zapshjacjd9o4bhbi"

/* How many random genuine callbacks of each family. */
#define GENUINE_PER_FAMILY 60

static void
chan_init(struct channel *ch, const char *family, const char *merchant_id, const char *key)
{
	memset(ch, 0, sizeof(*ch));
	ch->name = strdup(family);
	ch->family = family_find(family);
	ch->sign_type = SIGN_MD5;
	ch->merchant_id = strdup(merchant_id);
	ch->key = strdup(key);
	ch->key_len = strlen(key);
	ck_assert(ch->family != NULL && ch->name && ch->merchant_id && ch->key);
}

static void
chan_free(struct channel *ch)
{
	free(ch->name);
	free(ch->merchant_id);
	free(ch->key);
	memset(ch, 0, sizeof(*ch));
}

static void
pset(struct params *p, const char *name, const char *value, size_t n)
{
	ck_assert_msg(params_set(p, name, value, n) == 0, "params_set(%s)", name);
}

static void
psets(struct params *p, const char *name, const char *value)
{
	pset(p, name, value, strlen(value));
}

/* ---- reference signers (SPEC §2.1-§2.3) ---------------------------------- */

struct kv {
	char name[FORM_MAX_NAME + 1];
	char value[FORM_MAX_VALUE + 1];
};

static int
kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->name, ((const struct kv *)b)->name);
}

/* Sorted "k=v&k=v" of `v` but "sign", `skip1` and the values `empty`
 * says are left out. */
static void
sorted_string(struct kv *v, size_t n, const char *skip1, bool zero_too, struct sbuf *out)
{
	size_t i;
	bool first = true;

	qsort(v, n, sizeof(*v), kv_cmp);
	for (i = 0; i < n; i++) {
		if (strcmp(v[i].name, "sign") == 0 || strcmp(v[i].name, skip1) == 0 ||
		    v[i].value[0] == '\0' || (zero_too && strcmp(v[i].value, "0") == 0))
			continue;
		ck_assert((first || sbuf_addc(out, '&') == 0) && sbuf_adds(out, v[i].name) == 0 &&
		    sbuf_addc(out, '=') == 0 && sbuf_adds(out, v[i].value) == 0);
		first = false;
	}
}

static void
md5_of(const struct sbuf *s, char out[33])
{
	ck_assert_int_eq(crypto_md5_hex(s->p, s->len, out), 0);
}

/* ---- random genuine callbacks ------------------------------------------- */

static unsigned long rng_state = 20261130;

static unsigned
rnd(unsigned n)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)((rng_state >> 33) % n);
}

static const char *
pick(const char *const *v, size_t n)
{
	return v[rnd((unsigned)n)];
}

#define PICK(a) pick((a), sizeof(a) / sizeof((a)[0]))

static void
rnd_digits(char *out, unsigned min, unsigned max, bool lead_zero_ok)
{
	unsigned n = min + rnd(max - min + 1), i;

	for (i = 0; i < n; i++)
		out[i] = (char)('0' + rnd(10));
	if (!lead_zero_ok && n > 0 && out[0] == '0')
		out[0] = '1';
	out[n] = '\0';
}

static void
rnd_id(char *out, unsigned min, unsigned max)
{
	static const char set[] = "0123456789abcdefABCDEF_-";
	unsigned n = min + rnd(max - min + 1), i;

	for (i = 0; i < n; i++)
		out[i] = set[rnd(sizeof(set) - 1)];
	out[n] = '\0';
}

/* A canonical amount, printed as platforms do: "1.00", "12.5", "100". */
static void
rnd_amount(char *out, bool four_decimals_ok)
{
	unsigned yuan = rnd(4) == 0 ? 0 : 1 + rnd(5000), fen = rnd(100);

	switch (rnd(four_decimals_ok ? 4 : 3)) {
	case 0:
		sprintf(out, "%u.%02u", yuan, fen);
		break;
	case 1:
		if (fen % 10 == 0 && fen != 0)
			sprintf(out, "%u.%u", yuan, fen / 10);
		else
			sprintf(out, "%u.%02u", yuan, fen);
		break;
	case 2:
		sprintf(out, "%u", yuan == 0 ? 1 : yuan);
		break;
	default:
		sprintf(out, "%u.%02u00", yuan, fen);
		break;
	}
}

/* Free text as merchants and gateways really fill it, and as an attacker
 * would like it: '&' and '=' that look like the fields around them. */
static const char *const free_texts[] = { "VIP会员", "a&b=c", "x&type=alipay", "&money=100.00", "=",
	"t&trade_status=TRADE_SUCCESS", "uid=42&out_trade_no=EVIL", "1", "99", "12.5abc",
	"hello world", "&&", "returncode=00&amount=1000", "&trade_no=1&zz=2", "" };

/* ---- the payment a verified callback names -------------------------------- */

struct payment {
	char trade_no[FORM_MAX_VALUE + 1];
	char out_trade_no[FORM_MAX_VALUE + 1];
	char status[FORM_MAX_VALUE + 1];
	int type;
	int64_t amount_fen, paid_amount_fen;
};

static void
payment_of(const struct event *ev, struct payment *pm)
{
	memset(pm, 0, sizeof(*pm));
	snprintf(pm->trade_no, sizeof(pm->trade_no), "%s", ev->trade_no);
	snprintf(pm->out_trade_no, sizeof(pm->out_trade_no), "%s", ev->out_trade_no);
	snprintf(pm->status, sizeof(pm->status), "%s", ev->status);
	pm->type = (int)ev->type;
	pm->amount_fen = ev->amount_fen;
	pm->paid_amount_fen = ev->paid_amount_fen;
}

static bool
payment_equal(const struct payment *a, const struct payment *b)
{
	return strcmp(a->trade_no, b->trade_no) == 0 &&
	    strcmp(a->out_trade_no, b->out_trade_no) == 0 && strcmp(a->status, b->status) == 0 &&
	    a->type == b->type && a->amount_fen == b->amount_fen &&
	    a->paid_amount_fen == b->paid_amount_fen;
}

/* What confirmation by query compares: the order asked about, the gateway's
 * trade id and the amount. */
static bool
payment_query_equal(const struct payment *a, const struct payment *b)
{
	return strcmp(a->trade_no, b->trade_no) == 0 &&
	    strcmp(a->out_trade_no, b->out_trade_no) == 0 && a->amount_fen == b->amount_fen;
}

/* Set by the tests of the payer's return (SPEC §10.2): verify() then asks
 * the family's verify_return, which a payer feeds with the signed set of
 * their own return. Each check test runs in a process of its own. */
static bool via_return;

static enum verdict
verify(const struct channel *ch, const struct params *p, struct event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (via_return) {
		ck_assert(family_returns(ch->family));
		return ch->family->verify_return(ch, p, time(NULL), ev);
	}
	return ch->family->verify(ch, p, time(NULL), ev);
}

/* ---- sorted k=v families: epay and payindex -------------------------------- */

/* Every re-cut of the signed string `s` (tokens between '&' merged into the
 * previous value or not) that verifies must name `want` (NULL: none may
 * verify). `extra` are the
 * unsigned parameters sent along (sign, sign_type). Returns how many
 * variants verified. */
static unsigned
recut_sorted(const struct channel *ch, const char *s, const struct kv *extra, size_t nextra,
    const struct payment *want, const char *what)
{
	char *copy = strdup(s), *tok[32], *t;
	size_t n = 0, i;
	unsigned long pat, npat;
	unsigned accepted = 0;

	ck_assert_ptr_nonnull(copy);
	/* strtok would drop empty tokens: split by hand. */
	t = copy;
	tok[n++] = t;
	for (; *t != '\0'; t++)
		if (*t == '&') {
			*t = '\0';
			ck_assert_msg(n < 32, "%s: too many tokens", what);
			tok[n++] = t + 1;
		}
	npat = 1UL << (n - 1);
	for (pat = 0; pat < npat; pat++) {
		struct params p;
		struct event ev;
		struct payment got;
		struct sbuf val;
		char name[FORM_MAX_NAME + 1];
		bool ok = true;

		params_init(&p);
		sbuf_init(&val);
		name[0] = '\0';
		for (i = 0; i < n && ok; i++) {
			bool merge = i > 0 && (pat >> (i - 1) & 1);

			if (merge) {
				ck_assert(
				    sbuf_addc(&val, '&') == 0 && sbuf_adds(&val, tok[i]) == 0);
				continue;
			}
			if (i > 0) {
				/* A name seen twice would collapse: not this string. */
				if (params_get(&p, name) != NULL)
					ok = false;
				else
					pset(&p, name, val.p ? val.p : "", val.len);
			}
			{
				const char *eq = strchr(tok[i], '=');
				size_t nl = eq != NULL ? (size_t)(eq - tok[i]) : strlen(tok[i]);

				if (eq == NULL || nl == 0 || nl > FORM_MAX_NAME) {
					ok = false;
					break;
				}
				memcpy(name, tok[i], nl);
				name[nl] = '\0';
				sbuf_reset(&val);
				ck_assert(sbuf_adds(&val, eq + 1) == 0);
			}
		}
		if (ok) {
			if (params_get(&p, name) != NULL)
				ok = false;
			else
				pset(&p, name, val.p ? val.p : "", val.len);
		}
		for (i = 0; ok && i < nextra; i++)
			psets(&p, extra[i].name, extra[i].value);
		if (ok && verify(ch, &p, &ev) == VERDICT_OK) {
			accepted++;
			payment_of(&ev, &got);
			ck_assert_msg(want != NULL && payment_equal(&got, want),
			    "%s: the re-cut variant %lu of\n  %s\nverifies as another payment: "
			    "trade_no \"%s\" out_trade_no \"%s\" status \"%s\" amount %" PRId64
			    " paid %" PRId64 "\n(genuine: \"%s\" \"%s\" \"%s\" %" PRId64 " %" PRId64
			    ")",
			    what, pat, s, got.trade_no, got.out_trade_no, got.status,
			    got.amount_fen, got.paid_amount_fen, want ? want->trade_no : "-",
			    want ? want->out_trade_no : "-", want ? want->status : "-",
			    want ? want->amount_fen : -1, want ? want->paid_amount_fen : -1);
		}
		sbuf_free(&val);
		params_free(&p);
	}
	free(copy);
	return accepted;
}

/* Fills `v` with a random genuine epay callback (not yet signed). */
static size_t
epay_genuine(struct kv *v)
{
	static const char *const types[] = { "alipay", "wxpay", "qqpay" };
	size_t n = 0;

	strcpy(v[n].name, "pid");
	strcpy(v[n++].value, "1001");
	strcpy(v[n].name, "trade_no");
	rnd_digits(v[n++].value, 8, 20, false);
	strcpy(v[n].name, "out_trade_no");
	rnd_id(v[n++].value, 1, 16);
	strcpy(v[n].name, "money");
	rnd_amount(v[n++].value, false);
	strcpy(v[n].name, "trade_status");
	strcpy(v[n++].value, "TRADE_SUCCESS");
	strcpy(v[n].name, "type");
	strcpy(v[n++].value, PICK(types));
	strcpy(v[n].name, "name");
	strcpy(v[n++].value, PICK(free_texts));
	strcpy(v[n].name, "param");
	strcpy(v[n++].value, PICK(free_texts));
	if (rnd(2)) {
		strcpy(v[n].name, "buyer");
		strcpy(v[n++].value, PICK(free_texts));
	}
	if (rnd(2)) {
		strcpy(v[n].name, "endtime");
		strcpy(v[n++].value, "2026-11-30 10:00:00");
	}
	return n;
}

/* A family that signs a sorted "k=v&k=v" string. */
struct sorted_family {
	const char *family, *merchant_id, *key;
	size_t (*genuine)(struct kv *v);
	const char *unsigned_name; /* sent along, never signed */
	const char *unsigned_value;
	bool zero_unsigned;   /* "0" values are not signed (payindex) */
	const char *key_glue; /* between the string and the key */
	bool upper;           /* the sign in upper case hex */
};

/* Signs GENUINE_PER_FAMILY random genuine callbacks and tries every re-cut
 * of each. A genuine callback refused as ambiguous (hostile free text) must
 * have no re-cut that verifies either. Returns how many were refused. */
static unsigned
recut_family(const struct sorted_family *f)
{
	struct channel ch;
	unsigned g, accepted = 0, refused = 0;

	chan_init(&ch, f->family, f->merchant_id, f->key);
	for (g = 0; g < GENUINE_PER_FAMILY; g++) {
		struct kv v[16], extra[2];
		struct params p;
		struct event ev;
		struct payment want;
		struct sbuf s, k;
		char sign[33], what[64];
		size_t n = f->genuine(v), i;
		enum verdict got;

		sbuf_init(&s);
		sbuf_init(&k);
		sorted_string(v, n, f->unsigned_name, f->zero_unsigned, &s);
		ck_assert(sbuf_add(&k, s.p, s.len) == 0 && sbuf_adds(&k, f->key_glue) == 0 &&
		    sbuf_adds(&k, f->key) == 0);
		md5_of(&k, sign);
		for (i = 0; f->upper && sign[i] != '\0'; i++)
			if (sign[i] >= 'a' && sign[i] <= 'f')
				sign[i] = (char)(sign[i] - 'a' + 'A');
		strcpy(extra[0].name, "sign");
		strcpy(extra[0].value, sign);
		strcpy(extra[1].name, f->unsigned_name);
		strcpy(extra[1].value, f->unsigned_value);
		params_init(&p);
		for (i = 0; i < n; i++)
			psets(&p, v[i].name, v[i].value);
		for (i = 0; i < 2; i++)
			psets(&p, extra[i].name, extra[i].value);
		got = verify(&ch, &p, &ev);
		snprintf(what, sizeof(what), "%s #%u", f->family, g);
		if (got == VERDICT_AMBIGUOUS) {
			/* refused, and so is every re-cut of it */
			ck_assert_uint_eq(recut_sorted(&ch, s.p, extra, 2, NULL, what), 0);
			refused++;
		} else {
			ck_assert_msg(got == VERDICT_OK, "genuine %s %s: %s", f->family, s.p,
			    verdict_str(got));
			payment_of(&ev, &want);
			accepted += recut_sorted(&ch, s.p, extra, 2, &want, what);
		}
		params_free(&p);
		sbuf_free(&s);
		sbuf_free(&k);
	}
	/* The genuine cut itself is among the variants, every time. */
	ck_assert_uint_ge(accepted, GENUINE_PER_FAMILY - refused);
	chan_free(&ch);
	return refused;
}

START_TEST(test_recut_epay)
{
	static const struct sorted_family f = { "epay", "1001", EPAY_KEY, epay_genuine, "sign_type",
		"MD5", false, "", false };

	/* The generator did make the hostile free text ("&out_trade_no=…"). */
	ck_assert_uint_gt(recut_family(&f), 0);
}
END_TEST

static size_t
payindex_genuine(struct kv *v)
{
	static const char *const banks[] = { "ALIPAY", "WXPAY", "903", "0" };
	size_t n = 0;

	strcpy(v[n].name, "memberid");
	strcpy(v[n++].value, "10002");
	strcpy(v[n].name, "orderid");
	rnd_id(v[n].value, 1, 20);
	if (strcmp(v[n++].value, "0") == 0)
		strcpy(v[n - 1].value, "A"); /* "0" is never signed: not a genuine id */
	strcpy(v[n].name, "amount");
	rnd_amount(v[n++].value, true);
	if (rnd(2)) {
		strcpy(v[n].name, "true_amount");
		rnd_amount(v[n++].value, true);
	}
	strcpy(v[n].name, "transaction_id");
	rnd_digits(v[n++].value, 6, 24, false);
	strcpy(v[n].name, "datetime");
	strcpy(v[n++].value, "2026-11-30 10:00:00");
	strcpy(v[n].name, "returncode");
	strcpy(v[n++].value, "00");
	strcpy(v[n].name, "bankcode");
	strcpy(v[n++].value, PICK(banks));
	if (rnd(2)) {
		/* some platforms add signed free text */
		strcpy(v[n].name, "body");
		strcpy(v[n++].value, PICK(free_texts));
	}
	return n;
}

START_TEST(test_recut_payindex)
{
	static const struct sorted_family f = { "payindex", "10002", PAYINDEX_KEY, payindex_genuine,
		"attach", "uid=42&amount=1", true, "&key=", true };

	/* signed free text holding '&' (the "body" some platforms add) */
	ck_assert_uint_gt(recut_family(&f), 0);
}
END_TEST

/* ---- gatepay: a plain concatenation --------------------------------------- */

static const char *const gatepay_fields[] = { "order_id", "out_order_id", "price", "realprice",
	"type", "paytime", "extend" };
#define GATEPAY_NFIELDS 7

static void
gatepay_sign(const char *concat, char sign[33])
{
	struct sbuf s;
	char inner[33];

	sbuf_init(&s);
	ck_assert(sbuf_adds(&s, GATEPAY_APPKEY) == 0 && sbuf_adds(&s, concat) == 0);
	md5_of(&s, inner);
	sbuf_reset(&s);
	ck_assert(sbuf_adds(&s, inner) == 0 && sbuf_adds(&s, GATEPAY_SECRET) == 0);
	md5_of(&s, sign);
	sbuf_free(&s);
}

/* The variant of `concat` cut at `cut` (GATEPAY_NFIELDS + 1 positions).
 * Returns whether it verified; fills `got`. */
static bool
gatepay_variant(const struct channel *ch, const char *concat, const size_t *cut, const char *sign,
    struct payment *got)
{
	struct params p;
	struct event ev;
	size_t i;
	bool ok;

	params_init(&p);
	for (i = 0; i < GATEPAY_NFIELDS; i++)
		pset(&p, gatepay_fields[i], concat + cut[i], cut[i + 1] - cut[i]);
	psets(&p, "sign", sign);
	ok = verify(ch, &p, &ev) == VERDICT_OK;
	if (ok)
		payment_of(&ev, got);
	params_free(&p);
	return ok;
}

static void
gatepay_check(const struct payment *got, const struct payment *want, const char *concat,
    const size_t *cut)
{
	/* Confirmation asks the gateway about out_trade_no and compares trade
	 * id and amount: any other difference would pass it. */
	if (payment_query_equal(got, want))
		ck_assert_msg(payment_equal(got, want),
		    "gatepay re-cut of %s at %zu %zu %zu %zu %zu %zu changes what no query "
		    "confirms: paid %" PRId64 " (genuine %" PRId64 ")",
		    concat, cut[1], cut[2], cut[3], cut[4], cut[5], cut[6], got->paid_amount_fen,
		    want->paid_amount_fen);
}

START_TEST(test_recut_gatepay)
{
	static const char *const types[] = { "alipay", "wechat", "wxpay" };
	static const char *const extends[] = { "terry", "uid=7", "", "13800138000", "a@b.c",
		"8alipay", ".5" };
	struct channel ch;
	unsigned g, accepted = 0, differing = 0;

	chan_init(&ch, "gatepay", GATEPAY_APPKEY, GATEPAY_SECRET);
	for (g = 0; g < GENUINE_PER_FAMILY; g++) {
		char val[GATEPAY_NFIELDS][64], concat[512], sign[33];
		size_t cut[GATEPAY_NFIELDS + 1], len, i, j;
		int di, dj;
		struct payment want, got;

		rnd_digits(val[0], 1, 6, false);
		/* out_order_id often starts with digits: the ambiguous case */
		if (rnd(2))
			rnd_digits(val[1], 1, 8, true);
		else
			rnd_id(val[1], 1, 12);
		rnd_amount(val[2], false);
		if (rnd(2))
			strcpy(val[3], val[2]);
		else
			rnd_amount(val[3], false);
		strcpy(val[4], PICK(types));
		rnd_digits(val[5], 10, 10, false);
		strcpy(val[6], PICK(extends));
		concat[0] = '\0';
		cut[0] = 0;
		for (i = 0; i < GATEPAY_NFIELDS; i++) {
			strcat(concat, val[i]);
			cut[i + 1] = strlen(concat);
		}
		len = cut[GATEPAY_NFIELDS];
		gatepay_sign(concat, sign);
		ck_assert_msg(gatepay_variant(&ch, concat, cut, sign, &want), "genuine gatepay %s",
		    concat);

		/* every move of one boundary, and of two boundaries near each other */
		for (i = 1; i < GATEPAY_NFIELDS; i++) {
			for (di = -8; di <= 8; di++) {
				size_t c[GATEPAY_NFIELDS + 1];

				memcpy(c, cut, sizeof(c));
				if ((di < 0 && (size_t)-di > c[i]) || c[i] + (size_t)di > len)
					continue;
				c[i] += (size_t)di;
				if (c[i] < c[i - 1] || c[i] > c[i + 1])
					continue;
				if (gatepay_variant(&ch, concat, c, sign, &got)) {
					accepted++;
					differing += !payment_equal(&got, &want);
					gatepay_check(&got, &want, concat, c);
				}
			}
			for (j = i + 1; j < GATEPAY_NFIELDS; j++)
				for (di = -4; di <= 4; di++)
					for (dj = -4; dj <= 4; dj++) {
						size_t c[GATEPAY_NFIELDS + 1];

						memcpy(c, cut, sizeof(c));
						if ((di < 0 && (size_t)-di > c[i]) ||
						    (dj < 0 && (size_t)-dj > c[j]))
							continue;
						c[i] += (size_t)di;
						c[j] += (size_t)dj;
						if (c[i] < c[i - 1] || c[i] > c[i + 1] ||
						    c[j] < c[j - 1] || c[j] > c[j + 1] ||
						    c[j] > len)
							continue;
						if (gatepay_variant(&ch, concat, c, sign, &got)) {
							accepted++;
							differing += !payment_equal(&got, &want);
							gatepay_check(&got, &want, concat, c);
						}
					}
		}
	}
	/* The unmoved cut is tried too; and the test did meet the ambiguity
	 * that only confirmation can close (else it proves nothing there). */
	ck_assert_uint_ge(accepted, GENUINE_PER_FAMILY);
	ck_assert_msg(differing > 0, "no gatepay re-cut changed the order: generator too tame");
	chan_free(&ch);
}
END_TEST

/* The payer's return (SPEC §10.2): epay and payindex sign it as their
 * notify, so every re-cut of a random genuine return is tried as above. */
START_TEST(test_recut_returns_sorted)
{
	static const struct sorted_family fs[] = {
		{ "epay", "1001", EPAY_KEY, epay_genuine, "sign_type", "MD5", false, "", false },
		{ "payindex", "10002", PAYINDEX_KEY, payindex_genuine, "attach", "uid=42&amount=1",
		    true, "&key=", true },
	};
	size_t i;

	via_return = true;
	for (i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
		ck_assert_uint_gt(recut_family(&fs[i]), 0);
	via_return = false;
}
END_TEST

/* gatepay's return concatenates price type product_id order_id
 * out_order_id. Every move of one or two boundaries that verifies may only
 * differ in what confirmation by query compares (trade id, order id,
 * amount); and the amount, right after the appkey and ending at type,
 * never moves. */
static const char *const gatepay_return_fields[] = { "price", "type", "product_id", "order_id",
	"out_order_id" };
#define GATEPAY_RETURN_NFIELDS 5

static bool
gatepay_return_variant(const struct channel *ch, const char *concat, const size_t *cut,
    const char *sign, struct payment *got)
{
	struct params p;
	struct event ev;
	size_t i;
	bool ok;

	params_init(&p);
	for (i = 0; i < GATEPAY_RETURN_NFIELDS; i++)
		pset(&p, gatepay_return_fields[i], concat + cut[i], cut[i + 1] - cut[i]);
	psets(&p, "sign", sign);
	memset(&ev, 0, sizeof(ev));
	ok = ch->family->verify_return(ch, &p, time(NULL), &ev) == VERDICT_OK;
	if (ok)
		payment_of(&ev, got);
	params_free(&p);
	return ok;
}

START_TEST(test_recut_gatepay_return)
{
	static const char *const types[] = { "alipay", "wechat", "wxpay" };
	struct channel ch;
	unsigned g, accepted = 0, differing = 0;

	chan_init(&ch, "gatepay", GATEPAY_APPKEY, GATEPAY_SECRET);
	for (g = 0; g < GENUINE_PER_FAMILY; g++) {
		char val[GATEPAY_RETURN_NFIELDS][64], concat[512], sign[33];
		size_t cut[GATEPAY_RETURN_NFIELDS + 1], len, i, j;
		int di, dj;
		struct payment want, got;

		rnd_amount(val[0], false);
		strcpy(val[1], PICK(types));
		/* product_id: empty (anypay) or a number (stablepay) */
		if (rnd(2))
			rnd_digits(val[2], 1, 3, false);
		else
			val[2][0] = '\0';
		rnd_digits(val[3], 1, 6, false);
		if (rnd(2))
			rnd_digits(val[4], 1, 8, true);
		else
			rnd_id(val[4], 1, 12);
		concat[0] = '\0';
		cut[0] = 0;
		for (i = 0; i < GATEPAY_RETURN_NFIELDS; i++) {
			strcat(concat, val[i]);
			cut[i + 1] = strlen(concat);
		}
		len = cut[GATEPAY_RETURN_NFIELDS];
		gatepay_sign(concat, sign); /* the same md5(md5(appkey concat) secret) */
		ck_assert_msg(gatepay_return_variant(&ch, concat, cut, sign, &want),
		    "genuine gatepay return %s", concat);
		for (i = 1; i < GATEPAY_RETURN_NFIELDS; i++)
			for (j = i; j < GATEPAY_RETURN_NFIELDS; j++)
				for (di = -6; di <= 6; di++)
					for (dj = (j == i ? 0 : -6); dj <= (j == i ? 0 : 6); dj++) {
						/* gatepay_check prints 7 cuts */
						size_t c[GATEPAY_NFIELDS + 1] = { 0 };

						memcpy(c, cut, sizeof(cut));
						if ((di < 0 && (size_t)-di > c[i]) ||
						    (dj < 0 && (size_t)-dj > c[j]))
							continue;
						c[i] += (size_t)di;
						c[j] += (size_t)dj;
						if (c[i] < c[i - 1] || c[i] > c[i + 1] ||
						    c[j] < c[j - 1] || c[j] > c[j + 1] ||
						    c[j] > len)
							continue;
						if (!gatepay_return_variant(&ch, concat, c, sign,
							&got))
							continue;
						accepted++;
						differing += !payment_equal(&got, &want);
						ck_assert_msg(got.amount_fen == want.amount_fen &&
							got.paid_amount_fen == want.paid_amount_fen,
						    "gatepay return re-cut of %s moves the amount",
						    concat);
						gatepay_check(&got, &want, concat, c);
					}
	}
	ck_assert_uint_ge(accepted, GENUINE_PER_FAMILY);
	ck_assert_msg(differing > 0,
	    "no gatepay return re-cut changed the order: generator too tame");
	chan_free(&ch);
}
END_TEST

/* The example of SPEC §2.5 and the issue, exactly. */
START_TEST(test_recut_gatepay_spec_example)
{
	struct channel ch;
	struct params p;
	struct event ev;
	char sign[33];

	chan_init(&ch, "gatepay", GATEPAY_APPKEY, GATEPAY_SECRET);
	gatepay_sign("52210001.881.88alipay1557056209terry", sign);
	params_init(&p);
	psets(&p, "order_id", "5");
	psets(&p, "out_order_id", "221000");
	psets(&p, "price", "1.8");
	psets(&p, "realprice", "81.88");
	psets(&p, "type", "alipay");
	psets(&p, "paytime", "1557056209");
	psets(&p, "extend", "terry");
	psets(&p, "sign", sign);
	/* The signature cannot tell: only confirmation by query can (it asks
	 * about order 221000, and the gateway does not know it). */
	ck_assert_int_eq(verify(&ch, &p, &ev), VERDICT_OK);
	ck_assert_str_eq(ev.out_trade_no, "221000");
	/* realprice cut into type: refused by the relay itself */
	psets(&p, "order_id", "522");
	psets(&p, "out_order_id", "1000");
	psets(&p, "price", "1.88");
	psets(&p, "realprice", "1.8");
	psets(&p, "type", "8alipay");
	ck_assert_int_eq(verify(&ch, &p, &ev), VERDICT_AMBIGUOUS);
	params_free(&p);
	chan_free(&ch);
}
END_TEST

/* ---- canonical values ---------------------------------------------------- */

START_TEST(test_canonical_amount)
{
	static const char *const good[] = { "0", "1", "1.0", "1.00", "0.5", "100.0000", "12.5",
		"10", "0.01", "9999999" };
	static const char *const bad[] = { "", "01.00", "00", "+1", "-1", "1e2", ".5", "1.",
		"1.00000", " 1", "1 ", "0x10", "1,00", "01", "1.0.0", "１" };
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(family_canonical_amount(good[i]), "\"%s\" refused", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!family_canonical_amount(bad[i]), "\"%s\" accepted", bad[i]);
	ck_assert(!family_canonical_amount(NULL));
}
END_TEST

START_TEST(test_canonical_id)
{
	static const char *const good[] = { "2016080622555342651", "a-b_c.d", "T502", "00",
		"TRADE_SUCCESS", "x:y/z+1" };
	static const char *const bad[] = { "", "a b", "a&b", "a=b", "a%20b", "a\tb", "a\nb", "会员",
		"\x7f", "x\x01" };
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(family_canonical_id(good[i]), "\"%s\" refused", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!family_canonical_id(bad[i]), "\"%s\" accepted", bad[i]);
}
END_TEST

/* A NUL in any value and a name that is not an identifier are refused
 * before anything else, in every family. */
START_TEST(test_nul_and_names)
{
	static const char *const fams[][3] = { { "epay", "1001", EPAY_KEY },
		{ "gatepay", GATEPAY_APPKEY, GATEPAY_SECRET },
		{ "payindex", "10002", PAYINDEX_KEY } };
	size_t i;

	for (i = 0; i < 3; i++) {
		struct channel ch;
		struct params p;
		struct event ev;

		chan_init(&ch, fams[i][0], fams[i][1], fams[i][2]);
		params_init(&p);
		pset(&p, "name", "VIP\0gold", 8);
		ck_assert_int_eq(verify(&ch, &p, &ev), VERDICT_NUL);
		params_free(&p);
		params_init(&p);
		psets(&p, "money=1&pid", "1001");
		ck_assert_int_eq(verify(&ch, &p, &ev), VERDICT_BAD_NAME);
		params_free(&p);
		chan_free(&ch);
	}
}
END_TEST

/* ---- fail closed ----------------------------------------------------------- */

/* In a child whose crypto library has no MD5 (only OpenSSL's "base"
 * provider: what an MD5-less FIPS policy leaves), nothing verifies and
 * nothing gets an id. Returns a failure text, or NULL. */
static const char *
without_digests(void)
{
	static const struct {
		const char *family, *merchant, *key, *file;
	} fams[] = {
		{ "epay", NULL, NULL, "epay.json" },
		{ "gatepay", NULL, NULL, "gatepay.json" },
		{ "payindex", NULL, NULL, "payindex.json" },
	};
	char out[33], id[EVENT_ID_LEN + 1], why[256];
	size_t i;

	if (OSSL_PROVIDER_load(NULL, "base") == NULL)
		return "cannot load the base provider";
	memset(out, 'x', sizeof(out));
	if (crypto_md5_hex("abc", 3, out) != -1 || out[0] != '\0')
		return "crypto_md5_hex made up a digest";
	memset(id, 'x', sizeof(id));
	if (event_make_id(id, "c", "t", "paid") != -1 || id[0] != '\0')
		return "event_make_id made up an id";
	if (crypto_self_test(why, sizeof(why)) != -1 || strncmp(why, "MD5 ", 4) != 0)
		return "the self-test passed, or did not name MD5";
	for (i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
		json_t *root = vectors_load(fams[i].file);
		json_t *vec = json_array_get(vectors_array(root, "vectors"), 0);
		json_t *params = json_object_get(vec, "params"), *v;
		const char *k;
		struct channel ch;
		struct params p;
		struct event ev;
		enum verdict got;

		if (strcmp(fams[i].family, "epay") == 0)
			chan_init(&ch, "epay", vectors_str(params, "pid"), vectors_str(vec, "key"));
		else if (strcmp(fams[i].family, "gatepay") == 0)
			chan_init(&ch, "gatepay", vectors_str(vec, "appkey"),
			    vectors_str(vec, "appsecret"));
		else
			chan_init(&ch, "payindex", vectors_str(params, "memberid"),
			    vectors_str(vec, "key"));
		params_init(&p);
		json_object_foreach(params, k, v)
		    pset(&p, k, json_string_value(v), json_string_length(v));
		got = verify(&ch, &p, &ev);
		/* the payer's return too (SPEC §10.2) */
		if (got == VERDICT_CRYPTO && family_returns(ch.family)) {
			memset(&ev, 0, sizeof(ev));
			got = ch.family->verify_return(&ch, &p, time(NULL), &ev);
		}
		params_free(&p);
		chan_free(&ch);
		json_decref(root);
		if (got != VERDICT_CRYPTO)
			return "a genuine callback was not refused with VERDICT_CRYPTO";
	}
	return NULL;
}

START_TEST(test_digest_failure_refuses)
{
	int fds[2], status = 0;
	char msg[256] = "";
	ssize_t n;
	pid_t pid;

	/* Providers cannot be unloaded once used: a process of its own. */
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		const char *fail = without_digests();

		if (fail != NULL && write(fds[1], fail, strlen(fail)) < 0)
			_exit(2);
		_exit(fail != NULL);
	}
	close(fds[1]);
	n = read(fds[0], msg, sizeof(msg) - 1);
	msg[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "without MD5: %s", msg);
}
END_TEST

START_TEST(test_self_test_passes)
{
	char why[256] = "";

	ck_assert_msg(crypto_self_test(why, sizeof(why)) == 0, "self-test: %s", why);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("forgery");
	TCase *tc = tcase_create("recut");

	/* Thousands of variants per callback: more than check's 4 s under ASan. */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_recut_epay);
	tcase_add_test(tc, test_recut_payindex);
	tcase_add_test(tc, test_recut_gatepay);
	tcase_add_test(tc, test_recut_gatepay_spec_example);
	tcase_add_test(tc, test_recut_returns_sorted);
	tcase_add_test(tc, test_recut_gatepay_return);
	suite_add_tcase(s, tc);
	tc = tcase_create("canonical");
	tcase_add_test(tc, test_canonical_amount);
	tcase_add_test(tc, test_canonical_id);
	tcase_add_test(tc, test_nul_and_names);
	suite_add_tcase(s, tc);
	tc = tcase_create("fail_closed");
	tcase_add_test(tc, test_digest_failure_refuses);
	tcase_add_test(tc, test_self_test_passes);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
