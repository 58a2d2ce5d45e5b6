/* A webhook's circuit breaker (src/core/breaker.c; docs/delivery.md,
 * "Circuit breaker"): opened by breaker_after seconds of failures and at
 * least three in a row, probed one at a time at doubling intervals, closed
 * by any success. */
#include <check.h>
#include <string.h>

#include "breaker.h"
#include "vectors.h"

#define T0 1700000000000LL
#define AFTER 300 /* breaker_after, s */

static struct breaker
fresh(void)
{
	struct breaker b;

	memset(&b, 0, sizeof(b));
	return b;
}

/* Fails `n` times, `step_ms` apart from `t`; returns the time of the last. */
static int64_t
fail_n(struct breaker *b, int n, int64_t t, int64_t step_ms)
{
	int i;

	for (i = 0; i < n; i++, t += step_ms)
		ck_assert(!breaker_failure(b, t, AFTER));
	return t - step_ms;
}

START_TEST(test_closed_sends)
{
	struct breaker b = fresh();

	ck_assert_int_eq(breaker_allows(&b, T0, 0), BREAKER_SEND);
	ck_assert_int_eq(breaker_allows(&b, T0, 1000), BREAKER_SEND);
	ck_assert(!breaker_success(&b)); /* closing a closed breaker reports nothing */
}
END_TEST

START_TEST(test_opens_after_time_and_three_failures)
{
	struct breaker b = fresh();

	/* many failures, but within breaker_after: closed */
	fail_n(&b, 10, T0, 1000);
	ck_assert(!b.open);
	ck_assert_int_eq(b.failures, 10);
	ck_assert_int_eq(b.failing_since_ms, T0);
	/* the first failure at or past breaker_after opens it */
	ck_assert(breaker_failure(&b, T0 + AFTER * 1000, AFTER));
	ck_assert(b.open);
	ck_assert_int_eq(b.failures, 11);
	/* already open: no second opening */
	ck_assert(!breaker_failure(&b, T0 + AFTER * 1000 + 1, AFTER));
}
END_TEST

START_TEST(test_time_alone_does_not_open)
{
	struct breaker b = fresh();

	/* two failures far apart: long enough, too few */
	ck_assert(!breaker_failure(&b, T0, AFTER));
	ck_assert(!breaker_failure(&b, T0 + 3600 * 1000, AFTER));
	ck_assert(!b.open);
	/* the third in a row opens it */
	ck_assert(breaker_failure(&b, T0 + 3601 * 1000, AFTER));
	ck_assert(b.open);
}
END_TEST

START_TEST(test_off_never_opens)
{
	struct breaker b = fresh();
	int i;

	for (i = 0; i < 100; i++)
		ck_assert(!breaker_failure(&b, T0 + (int64_t)i * 86400 * 1000, 0));
	ck_assert(!b.open);
	ck_assert_int_eq(breaker_allows(&b, T0 + 100LL * 86400 * 1000, 0), BREAKER_SEND);
}
END_TEST

START_TEST(test_success_resets_the_run)
{
	struct breaker b = fresh();

	fail_n(&b, 2, T0, 1000);
	ck_assert(!breaker_success(&b));
	ck_assert_int_eq(b.failures, 0);
	ck_assert_int_eq(b.failing_since_ms, 0);
	/* the run starts again at the next failure: three more, and time */
	ck_assert(!breaker_failure(&b, T0 + 400 * 1000, AFTER));
	ck_assert(!breaker_failure(&b, T0 + 500 * 1000, AFTER));
	ck_assert(!breaker_failure(&b, T0 + 600 * 1000, AFTER));
	ck_assert(!b.open); /* 200 s of failures only */
	ck_assert(breaker_failure(&b, T0 + 700 * 1000, AFTER));
}
END_TEST

static struct breaker
opened_at(int64_t t)
{
	struct breaker b = fresh();

	fail_n(&b, 2, t - AFTER * 1000, 1000);
	ck_assert(breaker_failure(&b, t, AFTER));
	return b;
}

START_TEST(test_open_probes_one_at_a_time)
{
	struct breaker b = opened_at(T0);

	/* the first probe one second after opening */
	ck_assert_int_eq(b.next_probe_ms, T0 + BREAKER_PROBE_FIRST_MS);
	ck_assert_int_eq(breaker_allows(&b, T0, 0), BREAKER_WAIT);
	ck_assert_int_eq(breaker_allows(&b, T0 + 999, 0), BREAKER_WAIT);
	ck_assert_int_eq(breaker_allows(&b, T0 + 1000, 0), BREAKER_PROBE);
	/* not while attempts from before the opening are in flight */
	ck_assert_int_eq(breaker_allows(&b, T0 + 1000, 1), BREAKER_WAIT);
	/* not while a probe is in flight */
	breaker_probe_start(&b);
	ck_assert_int_eq(breaker_allows(&b, T0 + 5000, 0), BREAKER_WAIT);
	breaker_probe_end(&b);
	ck_assert_int_eq(breaker_allows(&b, T0 + 5000, 0), BREAKER_PROBE);
}
END_TEST

START_TEST(test_failed_probes_double_the_gap_up_to_the_max)
{
	static const int64_t gaps[] = { 2000, 4000, 8000, 10000, 10000 };
	struct breaker b = opened_at(T0);
	int64_t t = T0 + 1000;
	size_t i;

	for (i = 0; i < sizeof(gaps) / sizeof(gaps[0]); i++) {
		ck_assert_int_eq(breaker_allows(&b, t, 0), BREAKER_PROBE);
		breaker_probe_start(&b);
		breaker_probe_failed(&b, t, 10); /* probe_interval_max 10 s */
		breaker_probe_end(&b);
		/* still open: nothing until the next probe */
		ck_assert(b.open);
		ck_assert_int_eq(b.probe_interval_ms, gaps[i]);
		ck_assert_int_eq(b.next_probe_ms, t + gaps[i]);
		ck_assert_int_eq(breaker_allows(&b, t + gaps[i] - 1, 0), BREAKER_WAIT);
		t += gaps[i];
	}
}
END_TEST

START_TEST(test_successful_probe_closes)
{
	struct breaker b = opened_at(T0);

	breaker_probe_start(&b);
	ck_assert(breaker_success(&b));
	breaker_probe_end(&b);
	ck_assert(!b.open);
	ck_assert_int_eq(breaker_allows(&b, T0 + 1000, 0), BREAKER_SEND);
	/* opening again takes a whole new run, and restarts the probe gap */
	ck_assert(!breaker_failure(&b, T0 + 2000, AFTER));
	ck_assert(!breaker_failure(&b, T0 + 3000, AFTER));
	ck_assert(!breaker_failure(&b, T0 + 4000, AFTER));
	ck_assert(!b.open);
	ck_assert(breaker_failure(&b, T0 + 2000 + AFTER * 1000, AFTER));
	ck_assert_int_eq(b.probe_interval_ms, BREAKER_PROBE_FIRST_MS);
	ck_assert_int_eq(b.next_probe_ms, T0 + 2000 + AFTER * 1000 + BREAKER_PROBE_FIRST_MS);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("breaker");
	TCase *tc = tcase_create("breaker");

	tcase_add_test(tc, test_closed_sends);
	tcase_add_test(tc, test_opens_after_time_and_three_failures);
	tcase_add_test(tc, test_time_alone_does_not_open);
	tcase_add_test(tc, test_off_never_opens);
	tcase_add_test(tc, test_success_resets_the_run);
	tcase_add_test(tc, test_open_probes_one_at_a_time);
	tcase_add_test(tc, test_failed_probes_double_the_gap_up_to_the_max);
	tcase_add_test(tc, test_successful_probe_closes);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
