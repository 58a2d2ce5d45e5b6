/* Money as integers of fen. Never floating point. */
#ifndef PAYRELAY_AMOUNT_H
#define PAYRELAY_AMOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* The largest amount accepted: 10^15 fen (ten trillion yuan). */
#define AMOUNT_MAX_FEN 1000000000000000LL

/* Parses a decimal amount ("1", "1.0", "0.5", "100.0000") into fen.
 * Accepted: ASCII digits, optionally '.' followed by at least one digit;
 * digits after the second decimal must be zeros. Refused: sign, exponent,
 * white space, leading '.', trailing '.', over AMOUNT_MAX_FEN.
 * Returns 0 and sets *fen, or -1. */
int amount_parse(const char *s, size_t len, int64_t *fen) WUR;
/* Formats fen as "12.34" into out (at least 24 bytes). */
void amount_format(int64_t fen, char *out, size_t outlen);

#endif
