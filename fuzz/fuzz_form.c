/* form_decode of arbitrary bytes, twice into the same params (as a query
 * then a body), then a look-up of every decoded name. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct params p;
	size_t i, half = size / 2;

	params_init(&p);
	if (form_decode(&p, (const char *)data, size) == FORM_OK) {
		for (i = 0; i < p.n; i++) {
			if (p.v[i].name == NULL || p.v[i].value == NULL || p.v[i].value[p.v[i].vlen] != '\0')
				abort();
			if (params_get(&p, p.v[i].name) != &p.v[i])
				abort();
		}
	}
	(void)form_error_str(form_decode(&p, (const char *)data + half, size - half));
	params_free(&p);
	return 0;
}
