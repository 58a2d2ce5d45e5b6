#include "backoff.h"

#include "crypto.h"

double
backoff_unit(uint32_t r)
{
	return (double)r / (double)UINT32_MAX * 2.0 - 1.0;
}

double
backoff_random(void)
{
	uint32_t r;

	if (crypto_random(&r, sizeof(r)) == -1)
		return 0;
	return backoff_unit(r);
}

int64_t
backoff_jitter_ms(int64_t ms, double unit)
{
	return ms + (int64_t)((double)ms * 0.1 * unit);
}

int64_t
backoff_first_poll_ms(int64_t now, int poll_after, int64_t expires_ms)
{
	int64_t t = now + (int64_t)poll_after * 1000;

	return t < expires_ms ? t : expires_ms;
}

int64_t
backoff_poll_gap_ms(const unsigned *gaps, size_t ngaps, long polls, double unit)
{
	size_t i = polls < 1 ? 0 : (size_t)polls - 1;

	if (i >= ngaps)
		i = ngaps - 1;
	return backoff_jitter_ms((int64_t)gaps[i] * 1000, unit);
}
