/* A gateway client answer (SPEC §10): the body of a create, refund,
 * account or settle answer, as a family's *_parse reads it. The first
 * byte picks the operation (its bits 0-1: 0 create_parse, 1 refund_parse,
 * 2 account_parse, 3 settle_parse) and the family (its bits 2-7:
 * family_at(byte >> 2), modulo the table's size) of a fixed channel; the
 * rest is the body. An operation the family does not have (a NULL member)
 * is skipped. So 0x00 is an epay create answer, 0x01 an epay refund, 0x04
 * a gatepay create, 0x08 a payindex create, and a family added at the
 * table's end leaves these seeds as they are.
 *
 * What must hold besides no crash and no leak: what leaves the parser in
 * JSON (the answer to the admin API, the refund event's raw) is valid
 * UTF-8 and one line; the channel's key is never in it (for a create
 * answer, once the caller has masked its secrets); and a success sets what
 * the caller reads. That no start of the key is left where a field was cut
 * is tested in tests/unit (test_family_*.c): here a mutated key at a cut
 * cannot be told from a leak. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_chan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_chans_init();
	return 0;
}

static int
utf8(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);
	int ok = j != NULL;

	json_decref(j);
	return ok;
}

static int
has_key(const struct channel *ch, const char *s, size_t len)
{
	return memmem(s, len, ch->key, ch->key_len) != NULL;
}

/* A text field the caller puts in JSON: NUL-terminated inside its array,
 * one line, valid UTF-8 (json_string() checks), without the key. */
static void
check_text(const struct channel *ch, const char *s, size_t n, int oneline)
{
	size_t len, i;

	if (memchr(s, '\0', n) == NULL)
		abort();
	len = strlen(s);
	if (!utf8(s, len) || has_key(ch, s, len))
		abort();
	for (i = 0; oneline && i < len; i++)
		if ((unsigned char)s[i] < 0x20)
			abort();
}

static void
check_json(const struct channel *ch, const json_t *v)
{
	char *text;

	if ((text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		abort();
	if (has_key(ch, text, strlen(text)))
		abort();
	free(text);
}

static void
create(const struct channel *ch, const char *body, size_t len)
{
	struct pay_result r;

	memset(&r, 0, sizeof(r));
	ch->family->create_parse(ch, body, len, &r);
	if (r.ok) {
		if (r.url == NULL || *r.url == '\0' || (r.trade_no != NULL && *r.trade_no == '\0'))
			abort();
		if (pay_url_kind_str(r.kind) == NULL)
			abort();
		/* The pay URL and trade id are the gateway's, passed on as
		 * they are: only their JSON must hold. */
		if (!utf8(r.url, strlen(r.url)) ||
		    (r.trade_no != NULL && !utf8(r.trade_no, strlen(r.trade_no))))
			abort();
	} else {
		if (r.url != NULL || r.trade_no != NULL || (r.code[0] == '\0' && r.msg[0] == '\0'))
			abort();
		/* As src/daemon/payments.c's refused() does before they leave. */
		if (memchr(r.code, '\0', sizeof(r.code)) == NULL ||
		    memchr(r.msg, '\0', sizeof(r.msg)) == NULL)
			abort();
		(void)config_mask_text(r.code, strlen(r.code), ch->key, ch->key_len);
		(void)config_mask_text(r.msg, strlen(r.msg), ch->key, ch->key_len);
		check_text(ch, r.code, sizeof(r.code), 1);
		check_text(ch, r.msg, sizeof(r.msg), 1);
	}
	pay_result_free(&r);
}

static void
answer(const struct channel *ch, int op, const char *body, size_t len)
{
	struct family_answer a;
	const json_t *d, *list;
	size_t i;

	family_answer_init(&a);
	if (op == 1)
		ch->family->refund_parse(ch, body, len, &a);
	else if (op == 2)
		ch->family->account_parse(ch, body, len, &a);
	else
		ch->family->settle_parse(ch, body, len, &a);
	if (a.outcome != FAMILY_ANSWER_OK && a.outcome != FAMILY_ANSWER_REFUSED &&
	    a.outcome != FAMILY_ANSWER_GARBAGE)
		abort();
	check_text(ch, a.code, sizeof(a.code), 1);
	check_text(ch, a.msg, sizeof(a.msg), 1);
	/* detail is logged, and answered as JSON when nothing usable came */
	if (memchr(a.detail, '\0', sizeof(a.detail)) == NULL || a.detail[0] == '\0')
		abort();
	if (a.outcome == FAMILY_ANSWER_GARBAGE)
		check_text(ch, a.detail, sizeof(a.detail), 1);
	/* The refund event's raw: names and values stored and delivered. */
	for (i = 0; i < a.raw.n; i++) {
		if (has_key(ch, a.raw.v[i].name, strlen(a.raw.v[i].name)) ||
		    has_key(ch, a.raw.v[i].value, a.raw.v[i].vlen))
			abort();
		if (!utf8(a.raw.v[i].value, a.raw.v[i].vlen))
			abort();
	}
	if (a.outcome == FAMILY_ANSWER_OK) {
		if (a.code[0] == '\0' || !json_is_object(a.data))
			abort();
		check_json(ch, a.data);
		d = a.data;
		if (op == 2 &&
		    (json_string_value(json_object_get(d, "merchant_id")) == NULL ||
			strcmp(json_string_value(json_object_get(d, "merchant_id")),
			    ch->merchant_id) != 0))
			abort();
		if (op == 3) {
			list = json_object_get(d, "settlements");
			if (!json_is_array(list))
				abort();
			for (i = 0; i < json_array_size(list); i++)
				if (!json_is_object(json_array_get(list, i)))
					abort();
		}
	}
	family_answer_free(&a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct channel *ch;
	const char *body;
	size_t len;
	int op;

	if (size < 1)
		return 0;
	op = data[0] & 3;
	ch = &fuzz_chans[(size_t)(data[0] >> 2) % fuzz_nchans];
	body = (const char *)data + 1;
	len = size - 1;
	switch (op) {
	case 0:
		if (ch->family->create_parse != NULL)
			create(ch, body, len);
		break;
	case 1:
		if (ch->family->refund_parse != NULL)
			answer(ch, op, body, len);
		break;
	case 2:
		if (ch->family->account_parse != NULL)
			answer(ch, op, body, len);
		break;
	default:
		if (ch->family->settle_parse != NULL)
			answer(ch, op, body, len);
		break;
	}
	return 0;
}
