/* config_load of arbitrary bytes, written to one temp file per run. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[] = "/tmp/payrelay-fuzz-config-XXXXXX";
static int fd = -1;

static void
cleanup(void)
{
	if (fd != -1)
		unlink(path);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errs = { 0 };
	struct config *c;

	if (fd == -1) {
		if ((fd = mkstemp(path)) == -1)
			abort();
		atexit(cleanup);
	}
	if (ftruncate(fd, 0) == -1 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	c = config_load(path, &errs);
	if (c != NULL) {
		size_t i;

		for (i = 0; i < c->nchannels; i++)
			if (config_channel(c, c->channels[i].name) == NULL)
				abort();
		config_free(c);
	} else if (errs.n == 0) {
		abort(); /* a refused file says why */
	}
	config_errors_free(&errs);
	return 0;
}
