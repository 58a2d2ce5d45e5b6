/* Standard Webhooks signing and the retry schedule (src/core/webhook.c). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "crypto.h"
#include "vectors.h"
#include "webhook.h"

/* A webhook whose only secret is `secret`, decoded as config.c does:
 * whsec_<base64> is the base64 of the key, anything else is the key. */
static void
webhook_with_secret(struct webhook *w, size_t slot, const char *secret)
{
	struct webhook_secret *s = &w->secrets[slot];

	if (strncmp(secret, "whsec_", 6) == 0) {
		ck_assert_int_eq(crypto_base64_decode(secret + 6, strlen(secret + 6), &s->key,
				     &s->len),
		    0);
	} else {
		s->len = strlen(secret);
		s->key = malloc(s->len);
		ck_assert_ptr_nonnull(s->key);
		memcpy(s->key, secret, s->len);
	}
	if (slot + 1 > w->nsecrets)
		w->nsecrets = slot + 1;
}

static void
webhook_free_secrets(struct webhook *w)
{
	size_t i;

	for (i = 0; i < w->nsecrets; i++)
		free(w->secrets[i].key);
}

START_TEST(test_signature_vectors)
{
	json_t *doc = vectors_load("standard_webhooks.json");
	json_t *vs = vectors_array(doc, "vectors"), *v;
	size_t i;

	ck_assert_uint_gt(json_array_size(vs), 0);
	json_array_foreach(vs, i, v)
	{
		struct webhook w;
		const char *payload = vectors_str(v, "payload");
		json_int_t ts = json_integer_value(json_object_get(v, "timestamp"));
		char *sig;

		memset(&w, 0, sizeof(w));
		webhook_with_secret(&w, 0, vectors_str(v, "secret"));
		sig = webhook_signature(&w, vectors_str(v, "msg_id"), (long long)ts, payload,
		    strlen(payload));
		ck_assert_ptr_nonnull(sig);
		ck_assert_msg(strcmp(sig, vectors_str(v, "signature")) == 0, "%s: got %s want %s",
		    vectors_str(v, "description"), sig, vectors_str(v, "signature"));
		free(sig);
		webhook_free_secrets(&w);
	}
	json_decref(doc);
}
END_TEST

START_TEST(test_signature_rotation)
{
	json_t *doc = vectors_load("standard_webhooks.json");
	json_t *vs = vectors_array(doc, "vectors");
	json_t *a = json_array_get(vs, 0), *b = json_array_get(vs, 1);
	const char *payload = vectors_str(a, "payload");
	json_int_t ts = json_integer_value(json_object_get(a, "timestamp"));
	struct webhook w;
	char *sig, *first, want[256];

	ck_assert_ptr_nonnull(b);
	memset(&w, 0, sizeof(w));
	webhook_with_secret(&w, 0, vectors_str(a, "secret"));
	webhook_with_secret(&w, 1, vectors_str(b, "secret"));
	sig = webhook_signature(&w, vectors_str(a, "msg_id"), (long long)ts, payload,
	    strlen(payload));
	ck_assert_ptr_nonnull(sig);
	/* The first signature is the published one; the second is the other
	 * key's over the same message, separated by one space. */
	first = strchr(sig, ' ');
	ck_assert_ptr_nonnull(first);
	snprintf(want, sizeof(want), "%s ", vectors_str(a, "signature"));
	ck_assert_msg(strncmp(sig, want, strlen(want)) == 0, "got %s", sig);
	ck_assert_msg(strncmp(first + 1, "v1,", 3) == 0, "got %s", sig);
	ck_assert_str_ne(first + 1, vectors_str(a, "signature"));
	ck_assert_ptr_null(strchr(first + 1, ' '));
	free(sig);
	webhook_free_secrets(&w);
	json_decref(doc);
}
END_TEST

START_TEST(test_raw_secret_is_used_as_is)
{
	struct webhook w;
	unsigned char mac[32];
	char *sig, *b64, want[128];
	const char *body = "{}";

	memset(&w, 0, sizeof(w));
	webhook_with_secret(&w, 0, "not-a-whsec-secret");
	sig = webhook_signature(&w, "evt_1", 1795000000LL, body, strlen(body));
	ck_assert_ptr_nonnull(sig);
	ck_assert_int_eq(crypto_hmac_sha256("not-a-whsec-secret", 18, "evt_1.1795000000.{}", 19,
			     mac),
	    0);
	b64 = crypto_base64_encode(mac, sizeof(mac));
	snprintf(want, sizeof(want), "v1,%s", b64);
	ck_assert_str_eq(sig, want);
	free(b64);
	free(sig);
	webhook_free_secrets(&w);
}
END_TEST

static const unsigned sched[] = { 0, 5, 300 };

START_TEST(test_delay_follows_the_schedule)
{
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 0, -1, 0), 0);
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, -1, 0), 5000);
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 2, -1, 0), 300000);
	/* three entries, three attempts: nothing after the third */
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 3, -1, 0), -1);
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 7, -1, 0), -1);
}
END_TEST

START_TEST(test_delay_jitter_is_ten_percent)
{
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, -1, 1.0), 5500);
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, -1, -1.0), 4500);
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 2, -1, 0.5), 315000);
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 0, -1, 1.0), 0);
}
END_TEST

START_TEST(test_delay_honours_retry_after_up_to_the_longest)
{
	/* longer than the schedule's delay: waited */
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, 60, 0), 60000);
	/* shorter: the schedule wins */
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, 2, 0), 5000);
	/* beyond the longest delay of the schedule: capped there */
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, 86400, 0), 300000);
	/* no attempt left: Retry-After changes nothing */
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 3, 60, 0), -1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("webhook");
	TCase *tc = tcase_create("webhook");

	tcase_add_test(tc, test_signature_vectors);
	tcase_add_test(tc, test_signature_rotation);
	tcase_add_test(tc, test_raw_secret_is_used_as_is);
	tcase_add_test(tc, test_delay_follows_the_schedule);
	tcase_add_test(tc, test_delay_jitter_is_ten_percent);
	tcase_add_test(tc, test_delay_honours_retry_after_up_to_the_longest);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
