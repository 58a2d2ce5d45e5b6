/* amount_parse of arbitrary bytes; what parses must format and parse back
 * to the same fen. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amount.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t fen, again;
	char out[32];

	if (amount_parse((const char *)data, size, &fen) != 0)
		return 0;
	if (fen < 0 || fen > AMOUNT_MAX_FEN)
		abort();
	amount_format(fen, out, sizeof(out));
	if (amount_parse(out, strlen(out), &again) != 0 || again != fen)
		abort();
	return 0;
}
