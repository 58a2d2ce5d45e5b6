#include "webhook.h"

#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "config.h"
#include "crypto.h"

char *
webhook_signature(const struct webhook *w, const char *msg_id, long long timestamp,
    const char *body, size_t body_len)
{
	struct sbuf msg, out;
	unsigned char mac[32];
	size_t i;

	sbuf_init(&msg);
	sbuf_init(&out);
	if (sbuf_printf(&msg, "%s.%lld.", msg_id, timestamp) == -1 ||
	    sbuf_add(&msg, body, body_len) == -1)
		goto fail;
	for (i = 0; i < w->nsecrets; i++) {
		char *b64;

		if (crypto_hmac_sha256(w->secrets[i].key, w->secrets[i].len, msg.p, msg.len, mac) ==
		    -1)
			goto fail;
		if ((b64 = crypto_base64_encode(mac, sizeof(mac))) == NULL)
			goto fail;
		if ((i > 0 && sbuf_addc(&out, ' ') == -1) || sbuf_adds(&out, "v1,") == -1 ||
		    sbuf_adds(&out, b64) == -1) {
			free(b64);
			goto fail;
		}
		free(b64);
	}
	sbuf_free(&msg);
	return sbuf_steal(&out);
fail:
	sbuf_free(&msg);
	sbuf_free(&out);
	return NULL;
}

int64_t
webhook_next_delay_ms(const unsigned *schedule, size_t nschedule, long attempts_done,
    long retry_after, double jitter)
{
	int64_t delay, longest = 0;
	size_t i;

	if (attempts_done < 0 || (size_t)attempts_done >= nschedule)
		return -1;
	for (i = 0; i < nschedule; i++)
		if ((int64_t)schedule[i] * 1000 > longest)
			longest = (int64_t)schedule[i] * 1000;
	delay = backoff_jitter_ms((int64_t)schedule[attempts_done] * 1000, jitter);
	if (retry_after >= 0 && retry_after * 1000 > delay)
		delay = retry_after * 1000 < longest ? retry_after * 1000 : longest;
	return delay < 0 ? 0 : delay;
}
