#include "crypto.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

/* OpenSSL 3 looks an algorithm up on every EVP_md5() use; fetch it once. */
static EVP_MD *
md5_algorithm(void)
{
	static EVP_MD *md5;

	if (md5 == NULL)
		md5 = EVP_MD_fetch(NULL, "MD5", NULL);
	return md5;
}

void
crypto_md5_hex(const void *data, size_t len, char out[33])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const EVP_MD *alg = md5_algorithm();

	/* MD5 is what the gateways sign with; it is not used for anything else. */
	if (alg == NULL || EVP_Digest(data, len, md, &mdlen, alg, NULL) != 1 || mdlen != 16) {
		memset(out, '0', 32);
		out[32] = '\0';
		return;
	}
	hex_lower(out, md, 16);
}

int
crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
    unsigned char out[32])
{
	unsigned int outlen = 0;

	if (keylen > INT_MAX)
		return -1;
	if (HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) == NULL || outlen != 32)
		return -1;
	return 0;
}

char *
crypto_base64_encode(const void *data, size_t len)
{
	size_t outlen = 4 * ((len + 2) / 3) + 1;
	char *out;

	if (len > INT_MAX / 2 || (out = malloc(outlen)) == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

int
crypto_base64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	size_t pad = 0, i;
	int n;

	*out = NULL;
	*outlen = 0;
	if (len % 4 != 0 || len > INT_MAX / 2)
		return -1;
	/* EVP_DecodeBlock skips leading white space and ignores padding
	 * position rules; be strict ourselves. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '=') {
			if (i + 2 < len || (i + 1 < len && s[i + 1] != '='))
				return -1;
			pad++;
		} else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			       (c >= '0' && c <= '9') || c == '+' || c == '/')) {
			return -1;
		}
	}
	if ((buf = malloc(len / 4 * 3 + 1)) == NULL)
		return -1;
	n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n < pad) {
		free(buf);
		return -1;
	}
	*out = buf;
	*outlen = (size_t)n - pad;
	return 0;
}

EVP_PKEY *
crypto_pkey_load_pem(const char *pem, size_t len)
{
	EVP_PKEY *k;
	BIO *bio;

	if (len > INT_MAX || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
		return NULL;
	k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	return k;
}

void
crypto_pkey_free(EVP_PKEY *k)
{
	EVP_PKEY_free(k);
}

int
crypto_rsa_sha256_verify(EVP_PKEY *k, const void *data, size_t len, const char *sig_b64,
    size_t siglen)
{
	unsigned char *sig = NULL;
	size_t sl = 0;
	EVP_MD_CTX *ctx = NULL;
	int ok = 0;

	if (k == NULL || crypto_base64_decode(sig_b64, siglen, &sig, &sl) == -1)
		goto out;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		goto out;
	if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) != 1)
		goto out;
	ok = EVP_DigestVerify(ctx, sig, sl, data, len) == 1;
out:
	EVP_MD_CTX_free(ctx);
	free(sig);
	return ok;
}

int
crypto_random(void *buf, size_t n)
{
	if (n > INT_MAX)
		return -1;
	return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}
