#include "breaker.h"

enum breaker_allows
breaker_allows(const struct breaker *b, int64_t now, int in_flight)
{
	if (!b->open)
		return BREAKER_SEND;
	/* One probe at a time, at growing intervals. */
	if (!b->probing && in_flight == 0 && now >= b->next_probe_ms)
		return BREAKER_PROBE;
	return BREAKER_WAIT;
}

void
breaker_probe_start(struct breaker *b)
{
	b->probing = true;
}

void
breaker_probe_end(struct breaker *b)
{
	b->probing = false;
}

bool
breaker_success(struct breaker *b)
{
	bool was_open = b->open;

	b->failing_since_ms = 0;
	b->failures = 0;
	b->open = false;
	return was_open;
}

bool
breaker_failure(struct breaker *b, int64_t now, int breaker_after)
{
	if (b->failing_since_ms == 0)
		b->failing_since_ms = now;
	b->failures++;
	if (b->open || breaker_after == 0 || b->failures < BREAKER_MIN_FAILURES ||
	    now - b->failing_since_ms < (int64_t)breaker_after * 1000)
		return false;
	b->open = true;
	b->probe_interval_ms = BREAKER_PROBE_FIRST_MS;
	b->next_probe_ms = now + b->probe_interval_ms;
	return true;
}

void
breaker_probe_failed(struct breaker *b, int64_t now, int probe_interval_max)
{
	int64_t max = (int64_t)probe_interval_max * 1000;

	b->probe_interval_ms = b->probe_interval_ms * 2 > max ? max : b->probe_interval_ms * 2;
	b->next_probe_ms = now + b->probe_interval_ms;
}
