#include "amount.h"

#include <inttypes.h>
#include <stdio.h>

int
amount_parse(const char *s, size_t len, int64_t *fen)
{
	int64_t yuan = 0, cents = 0;
	size_t i = 0, intdigits = 0, fracdigits = 0;

	if (s == NULL)
		return -1;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, intdigits++) {
		if (yuan > (AMOUNT_MAX_FEN / 100))
			return -1;
		yuan = yuan * 10 + (s[i] - '0');
	}
	if (intdigits == 0)
		return -1;
	if (i < len) {
		if (s[i] != '.')
			return -1;
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, fracdigits++) {
			int d = s[i] - '0';

			if (fracdigits < 2)
				cents = cents * 10 + d;
			else if (d != 0)
				return -1; /* 1.001: not a whole number of fen */
		}
		if (fracdigits == 0 || i != len)
			return -1;
	}
	if (fracdigits == 1)
		cents *= 10;
	if (yuan > AMOUNT_MAX_FEN / 100 || yuan * 100 + cents > AMOUNT_MAX_FEN)
		return -1;
	*fen = yuan * 100 + cents;
	return 0;
}

void
amount_format(int64_t fen, char *out, size_t outlen)
{
	const char *sign = fen < 0 ? "-" : "";
	uint64_t v = fen < 0 ? (uint64_t)0 - (uint64_t)fen : (uint64_t)fen;

	snprintf(out, outlen, "%s%" PRIu64 ".%02" PRIu64, sign, v / 100, v % 100);
}
