/* Fixed channels for the fuzz targets, with the keys of the shared test
 * vectors (so seeds built from the vectors verify). */
#ifndef PAYRELAY_FUZZ_CHAN_H
#define PAYRELAY_FUZZ_CHAN_H

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "family.h"

#define FUZZ_NOW ((time_t)1795000000) /* the epay RSA vectors' timestamp */

static void
fuzz_chan(struct channel *ch, const char *name, const char *family, const char *merchant_id,
    const char *key)
{
	memset(ch, 0, sizeof(*ch));
	ch->name = (char *)name;
	ch->family = family_find(family);
	ch->sign_type = SIGN_MD5;
	ch->merchant_id = (char *)merchant_id;
	ch->key = (char *)key;
	ch->key_len = strlen(key);
	ch->api_base = (char *)"https://pay.example.com";
	if (ch->family == NULL)
		abort();
}

static struct channel fuzz_epay, fuzz_gatepay, fuzz_payindex;

static void
fuzz_chans_init(void)
{
	fuzz_chan(&fuzz_epay, "shop-epay", "epay", "1001", "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i");
	fuzz_chan(&fuzz_gatepay, "shop-gatepay", "gatepay", "098f6bcd4621d373cade4e832627b4f6",
	    "5ebe2294ecd0e0f08eab7690d2a6ee69");
	fuzz_chan(&fuzz_payindex, "shop-payindex", "payindex", "10002",
	    "t4ig5acnpx4fet4zapshjacjd9o4bhbi");
}

#endif
