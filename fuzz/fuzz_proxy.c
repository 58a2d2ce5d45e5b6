/* proxyproto_parse of arbitrary bytes, and of every prefix of them: a
 * header found must lie within the bytes, its address be TCP over IPv4 or
 * IPv6, and a shorter read must never find a different header. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto pp;
	const char *why;
	int n = proxyproto_parse(data, size, &pp, &why), m;
	size_t i;

	if (n > 0) {
		if ((size_t)n > size || (size_t)n > PROXYPROTO_MAX)
			abort();
		if (!pp.local && pp.src.ss_family != AF_INET && pp.src.ss_family != AF_INET6)
			abort();
	} else if (n == -1 && why == NULL) {
		abort();
	} else if (n == 0 && size >= PROXYPROTO_MAX) {
		abort();
	}
	for (i = 0; i < size && i < 200; i++) {
		m = proxyproto_parse(data, i, &pp, &why);
		/* Fewer bytes: the same header once whole, or "more". */
		if (m > 0 && m != n)
			abort();
		if (m == -1 && n != -1)
			abort();
	}
	return 0;
}
