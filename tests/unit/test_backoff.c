/* The jitter that webhook retries and order polls share, and the poll
 * schedule of a registered order (src/core/backoff.c; docs/delivery.md,
 * docs/reconciliation.md). */
#include <check.h>
#include <stdint.h>

#include "backoff.h"
#include "vectors.h"
#include "webhook.h"

START_TEST(test_unit_spans_minus_one_to_one)
{
	ck_assert_double_eq(backoff_unit(0), -1.0);
	ck_assert_double_eq(backoff_unit(UINT32_MAX), 1.0);
	ck_assert_double_eq_tol(backoff_unit(UINT32_MAX / 2), 0.0, 1e-9);
	ck_assert(backoff_unit(1000) < backoff_unit(2000));
}
END_TEST

START_TEST(test_jitter_is_ten_percent)
{
	ck_assert_int_eq(backoff_jitter_ms(5000, 0), 5000);
	ck_assert_int_eq(backoff_jitter_ms(5000, 1.0), 5500);
	ck_assert_int_eq(backoff_jitter_ms(5000, -1.0), 4500);
	ck_assert_int_eq(backoff_jitter_ms(300000, 0.5), 315000);
	ck_assert_int_eq(backoff_jitter_ms(0, 1.0), 0);
}
END_TEST

/* Fresh randomness stays within ±10 % and is not a constant. */
START_TEST(test_random_jitter_stays_in_bounds)
{
	int below = 0, above = 0, i;

	for (i = 0; i < 2000; i++) {
		double u = backoff_random();
		int64_t ms = backoff_jitter_ms(60000, u);

		ck_assert(u >= -1.0 && u <= 1.0);
		ck_assert_int_ge(ms, 54000);
		ck_assert_int_le(ms, 66000);
		below += ms < 60000;
		above += ms > 60000;
	}
	ck_assert_int_gt(below, 500);
	ck_assert_int_gt(above, 500);
}
END_TEST

/* Webhook retries use the same jitter (it was written twice). */
START_TEST(test_webhook_retries_share_the_jitter)
{
	static const unsigned sched[] = { 0, 5, 300 };
	double u;

	for (u = -1.0; u <= 1.0; u += 0.25) {
		ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, -1, u),
		    backoff_jitter_ms(5000, u));
		ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 2, -1, u),
		    backoff_jitter_ms(300000, u));
	}
}
END_TEST

/* Retry-After replaces the delay only when longer than the jittered one. */
START_TEST(test_retry_after_against_the_jittered_delay)
{
	static const unsigned sched[] = { 0, 5, 300 };

	/* 5 s +10 % = 5.5 s: Retry-After 5 does not shorten it */
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, 5, 1.0), 5500);
	/* 5 s -10 % = 4.5 s: Retry-After 5 is longer, and wins */
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, 5, -1.0), 5000);
	/* no jitter on top of Retry-After, and the cap is the longest entry */
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, 100, 1.0), 100000);
	ck_assert_int_eq(webhook_next_delay_ms(sched, 3, 1, 1000, -1.0), 300000);
}
END_TEST

START_TEST(test_first_poll_after_registration)
{
	int64_t now = 1700000000000LL;

	/* poll_after seconds later, without jitter */
	ck_assert_int_eq(backoff_first_poll_ms(now, 60, now + 86400000), now + 60000);
	ck_assert_int_eq(backoff_first_poll_ms(now, 1, now + 86400000), now + 1000);
	/* never after the expiry: a poll_after longer than expires_in polls at it */
	ck_assert_int_eq(backoff_first_poll_ms(now, 600, now + 30000), now + 30000);
	ck_assert_int_eq(backoff_first_poll_ms(now, 60, now + 60000), now + 60000);
}
END_TEST

START_TEST(test_gap_follows_the_schedule)
{
	static const unsigned gaps[] = { 60, 120, 300 };

	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 3, 1, 0), 60000);
	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 3, 2, 0), 120000);
	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 3, 3, 0), 300000);
	/* the last gap repeats */
	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 3, 4, 0), 300000);
	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 3, 1000, 0), 300000);
	/* before any poll: the first gap */
	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 3, 0, 0), 60000);
	/* one gap only */
	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 1, 5, 0), 60000);
}
END_TEST

START_TEST(test_gap_jitter_is_ten_percent)
{
	static const unsigned gaps[] = { 60, 120, 300 };

	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 3, 1, 1.0), 66000);
	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 3, 1, -1.0), 54000);
	ck_assert_int_eq(backoff_poll_gap_ms(gaps, 3, 3, 0.5), 315000);
}
END_TEST

/* docs/reconciliation.md: with poll_after 60 and the default gaps, polls
 * come at about 1, 2, 4, 9, 19 and 49 min, and then hourly. */
START_TEST(test_default_schedule_in_minutes)
{
	static const unsigned gaps[] = { 60, 120, 300, 600, 1800, 3600 };
	static const int64_t minutes[] = { 1, 2, 4, 9, 19, 49, 109, 169, 229 };
	int64_t now = 0, expires = 30LL * 86400 * 1000, at;
	size_t i;

	at = backoff_first_poll_ms(now, 60, expires);
	for (i = 0; i < sizeof(minutes) / sizeof(minutes[0]); i++) {
		ck_assert_int_eq(at, minutes[i] * 60000);
		/* the outcome of poll i + 1 is stored at `at` */
		at += backoff_poll_gap_ms(gaps, 6, (long)i + 1, 0);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("backoff");
	TCase *tc;

	tc = tcase_create("jitter");
	tcase_add_test(tc, test_unit_spans_minus_one_to_one);
	tcase_add_test(tc, test_jitter_is_ten_percent);
	tcase_add_test(tc, test_random_jitter_stays_in_bounds);
	tcase_add_test(tc, test_webhook_retries_share_the_jitter);
	tcase_add_test(tc, test_retry_after_against_the_jittered_delay);
	suite_add_tcase(s, tc);
	tc = tcase_create("polls");
	tcase_add_test(tc, test_first_poll_after_registration);
	tcase_add_test(tc, test_gap_follows_the_schedule);
	tcase_add_test(tc, test_gap_jitter_is_ten_percent);
	tcase_add_test(tc, test_default_schedule_in_minutes);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
