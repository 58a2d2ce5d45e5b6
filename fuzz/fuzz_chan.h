/* Fixed channels for the fuzz targets: one per family of the table, with
 * the keys of the shared test vectors (so seeds built from the vectors
 * verify). A family the vectors do not list yet is fuzzed with a made-up
 * key: its seeds then reach verify, not past the signature. */
#ifndef PAYRELAY_FUZZ_CHAN_H
#define PAYRELAY_FUZZ_CHAN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "family.h"

#define FUZZ_NOW ((time_t)1795000000) /* the epay RSA vectors' timestamp */
#define FUZZ_MAX_FAMILIES 32

/* The vectors' merchant ids and keys, by family name. */
static const struct {
	const char *family, *merchant_id, *key;
} fuzz_keys[] = {
	{ "epay", "1001", "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i" },
	{ "gatepay", "098f6bcd4621d373cade4e832627b4f6", "5ebe2294ecd0e0f08eab7690d2a6ee69" },
	{ "payindex", "10002", "t4ig5acnpx4fet4zapshjacjd9o4bhbi" },
};

static struct channel fuzz_chans[FUZZ_MAX_FAMILIES]; /* fuzz_chans[i]: family_at(i) */
static char fuzz_names[FUZZ_MAX_FAMILIES][80];
static size_t fuzz_nchans;

static void
fuzz_chan(struct channel *ch, const char *name, const struct family *f)
{
	const char *merchant_id = "fuzz-merchant", *key = "fuzz-key-0123456789abcdef";
	size_t i;

	for (i = 0; i < sizeof(fuzz_keys) / sizeof(fuzz_keys[0]); i++)
		if (strcmp(fuzz_keys[i].family, f->name) == 0) {
			merchant_id = fuzz_keys[i].merchant_id;
			key = fuzz_keys[i].key;
		}
	memset(ch, 0, sizeof(*ch));
	ch->name = (char *)name;
	ch->family = f;
	ch->sign_type = SIGN_MD5;
	ch->merchant_id = (char *)merchant_id;
	ch->key = (char *)key;
	ch->key_len = strlen(key);
	ch->api_base = (char *)"https://pay.example.com";
}

static void
fuzz_chans_init(void)
{
	size_t i;

	fuzz_nchans = family_count();
	if (fuzz_nchans == 0 || fuzz_nchans > FUZZ_MAX_FAMILIES)
		abort();
	for (i = 0; i < fuzz_nchans; i++) {
		snprintf(fuzz_names[i], sizeof(fuzz_names[i]), "shop-%s", family_at(i)->name);
		fuzz_chan(&fuzz_chans[i], fuzz_names[i], family_at(i));
	}
}

#endif
