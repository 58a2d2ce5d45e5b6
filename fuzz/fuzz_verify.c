/* A callback against a fixed channel. The first byte picks the channel:
 * 0 epay MD5, 1 epay RSA (only when PAYRELAY_VECTORS gives the test public
 * key; else epay MD5), 2 gatepay, 3 payindex. The rest is the form body. A
 * verified callback must make an event that turns into JSON. */
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

static struct channel fuzz_epay_rsa;
static int have_rsa;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("PAYRELAY_VECTORS");
	char path[4096];
	json_t *root;
	const char *pem;

	fuzz_chans_init();
	fuzz_chan(&fuzz_epay_rsa, "shop-epay-rsa", "epay", "1001", "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i");
	fuzz_epay_rsa.sign_type = SIGN_RSA;
	if (dir == NULL || *dir == '\0')
		return 0;
	snprintf(path, sizeof(path), "%s/epay_rsa.json", dir);
	if ((root = json_load_file(path, 0, NULL)) == NULL) {
		fprintf(stderr, "fuzz_verify: cannot read %s: epay RSA not fuzzed\n", path);
		return 0;
	}
	pem = json_string_value(json_object_get(root, "platform_public_key_pem"));
	if (pem != NULL &&
	    (fuzz_epay_rsa.platform_key = crypto_pkey_load_pem(pem, strlen(pem))) != NULL)
		have_rsa = 1;
	else
		fprintf(stderr, "fuzz_verify: no key in %s: epay RSA not fuzzed\n", path);
	json_decref(root);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct channel *ch;
	struct params p;
	struct event ev;
	enum verdict v;
	char *json;

	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 1:
		ch = have_rsa ? &fuzz_epay_rsa : &fuzz_epay;
		break;
	case 2:
		ch = &fuzz_gatepay;
		break;
	case 3:
		ch = &fuzz_payindex;
		break;
	default:
		ch = &fuzz_epay;
		break;
	}
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
out:
	params_free(&p);
	return 0;
}
