/* A poll answer body. The first byte picks the family (family_at(byte),
 * modulo the table's size: 0 epay, 1 gatepay, 2 payindex) of a fixed
 * channel polled for order "O1"; the rest is the body. Every body is also
 * parsed as a sweep page by every family that sweeps (epay). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_chan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SWEEP_MAX 8

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_chans_init();
	return 0;
}

static void
to_json(struct poll_answer *a)
{
	char *json;

	if (a->state != POLL_PAID)
		return;
	a->ev.source = SOURCE_POLL;
	if ((json = event_to_json(&a->ev)) == NULL)
		abort();
	free(json);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct channel *ch;
	struct poll_answer a, sweep[SWEEP_MAX];
	const char *body;
	size_t len;
	bool more;
	int i, n;
	size_t f;

	if (size < 1)
		return 0;
	ch = &fuzz_chans[data[0] % fuzz_nchans];
	body = (const char *)data + 1;
	len = size - 1;

	if (ch->family->poll_parse != NULL) {
		poll_answer_init(&a);
		ch->family->poll_parse(ch, "O1", body, len, &a);
		(void)poll_state_str(a.state);
		if (memchr(a.detail, '\0', sizeof(a.detail)) == NULL)
			abort();
		to_json(&a);
		poll_answer_free(&a);
	}

	for (f = 0; f < fuzz_nchans; f++) {
		ch = &fuzz_chans[f];
		if (!family_sweeps(ch->family))
			continue;
		/* As src/daemon/poll.c does: init every slot, free every slot. */
		for (i = 0; i < SWEEP_MAX; i++)
			poll_answer_init(&sweep[i]);
		n = ch->family->sweep_parse(ch, body, len, sweep, SWEEP_MAX, &more);
		if (n < -1 || n > SWEEP_MAX)
			abort();
		for (i = 0; i < n; i++)
			to_json(&sweep[i]);
		for (i = 0; i < SWEEP_MAX; i++)
			poll_answer_free(&sweep[i]);
	}
	return 0;
}
