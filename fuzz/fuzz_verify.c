/* A callback against a fixed channel. The first byte picks the channel:
 * its bits 1-7 the family (family_at(byte >> 1), modulo the table's size),
 * its bit 0 the RSA channel of a family that allows sign_type = RSA (only
 * when PAYRELAY_VECTORS gives its test public key, NAME_rsa.json; else the
 * MD5 one). So 0 is epay MD5, 1 epay RSA, 2 gatepay, 4 payindex, and a new
 * family added at the table's end leaves these seeds as they are. The rest
 * is the form body. A verified callback must make an event that turns into
 * JSON. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "fuzz_chan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fuzz_rsa[i]: family_at(i)'s RSA channel, when it has one. */
static struct channel fuzz_rsa[FUZZ_MAX_FAMILIES];
static int have_rsa[FUZZ_MAX_FAMILIES];

static void
load_rsa(const char *dir, size_t i)
{
	const struct family *f = family_at(i);
	char path[4096];
	json_t *root;
	const char *pem;

	fuzz_rsa[i] = fuzz_chans[i];
	fuzz_rsa[i].sign_type = SIGN_RSA;
	snprintf(path, sizeof(path), "%s/%s_rsa.json", dir, f->name);
	if ((root = json_load_file(path, 0, NULL)) == NULL) {
		fprintf(stderr, "fuzz_verify: cannot read %s: %s RSA not fuzzed\n", path, f->name);
		return;
	}
	pem = json_string_value(json_object_get(root, "platform_public_key_pem"));
	if (pem != NULL &&
	    (fuzz_rsa[i].platform_key = crypto_pkey_load_pem(pem, strlen(pem))) != NULL)
		have_rsa[i] = 1;
	else
		fprintf(stderr, "fuzz_verify: no key in %s: %s RSA not fuzzed\n", path, f->name);
	json_decref(root);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("PAYRELAY_VECTORS");
	size_t i;

	fuzz_chans_init();
	for (i = 0; i < fuzz_nchans; i++)
		if (family_rsa(family_at(i)) && dir != NULL && *dir != '\0')
			load_rsa(dir, i);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct channel *ch;
	struct params p;
	size_t i;
	struct event ev;
	enum verdict v;
	char *json;

	if (size < 1)
		return 0;
	i = (size_t)(data[0] >> 1) % fuzz_nchans;
	ch = (data[0] & 1) && have_rsa[i] ? &fuzz_rsa[i] : &fuzz_chans[i];
	params_init(&p);
	if (form_decode(&p, (const char *)data + 1, size - 1) != FORM_OK)
		goto out;
	memset(&ev, 0, sizeof(ev));
	v = ch->family->verify(ch, &p, FUZZ_NOW, &ev);
	(void)verdict_str(v);
	if (v == VERDICT_OK) {
		ev.source = SOURCE_CALLBACK;
		ev.received_ms = (int64_t)FUZZ_NOW * 1000;
		if ((json = event_to_json(&ev)) == NULL)
			abort();
		free(json);
	}
	/* The same bytes as the payer's return (SPEC §10.2). */
	if (family_returns(ch->family)) {
		memset(&ev, 0, sizeof(ev));
		if (ch->family->verify_return(ch, &p, FUZZ_NOW, &ev) == VERDICT_OK) {
			ev.source = SOURCE_RETURN;
			ev.received_ms = (int64_t)FUZZ_NOW * 1000;
			if ((json = event_to_json(&ev)) == NULL)
				abort();
			free(json);
		}
	}
out:
	params_free(&p);
	return 0;
}
