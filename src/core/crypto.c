#include "crypto.h"

#include <limits.h>
#include <stdio.h>
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

int
crypto_md5_hex(const void *data, size_t len, char out[33])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const EVP_MD *alg = md5_algorithm();

	/* MD5 is what the gateways sign with; it is not used for anything else.
	 * Fail closed: no digest is ever made up. */
	out[0] = '\0';
	if (alg == NULL || EVP_Digest(data, len, md, &mdlen, alg, NULL) != 1 || mdlen != 16)
		return -1;
	hex_lower(out, md, 16);
	return 0;
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
	int rc = -1;

	if (k == NULL)
		goto out;
	if (crypto_base64_decode(sig_b64, siglen, &sig, &sl) == -1) {
		rc = 0; /* not a signature at all */
		goto out;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		goto out;
	if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) != 1)
		goto out;
	/* 1 valid, 0 a wrong signature, < 0 the library failed. */
	switch (EVP_DigestVerify(ctx, sig, sl, data, len)) {
	case 1:
		rc = 1;
		break;
	case 0:
		rc = 0;
		break;
	default:
		rc = -1;
		break;
	}
out:
	EVP_MD_CTX_free(ctx);
	free(sig);
	return rc;
}

/* The self-test's RSA key and its SHA256withRSA signature of
 * SELF_TEST_MESSAGE, made for this test with `openssl genrsa 2048` and
 * `openssl dgst -sha256 -sign` (the private key was thrown away). */
#define SELF_TEST_MESSAGE "payrelay self-test"
static const char self_test_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1LwUze6VnR+IRhcgbGwG\n"
    "0rmHuEpSGqjgZZFRh/j5PviaDtrHMroU3uGIdJhRZJE4GK+66j+4RDVU9V186o1N\n"
    "CM/3rvMff2KCMYLT1M1bsWmGGE+7ZPMTz4BxftARaWCfZOQ7wkpB1339dTHJC/+N\n"
    "cLHo9/F1XjhCwNG08OLjQtQO1Vee8BSxVC4ZAqmtlglOiUwMqUGlalmQV7y65dop\n"
    "lmMw6ZzA2dZVhro98T8ST20NlV9WpaE8kIIVNS8sUoTCrE6FMzMzqO2+qEzLwTgW\n"
    "THjsVhftqH55lVT+Bx8K0zfQSCaHXD4AioQA4TqtBxcLYvoZhAQnDEQFzD54vsjI\n"
    "BwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";
static const char self_test_sig[] =
    "YOi+VgsnmN1LcEm3LXiLn2+dvFkXnmngEf+rt+kH8XXJrfa5HCcSE9FOVLxno1PNyPB6eNTcgnSOAKCJYX2P4XY+"
    "ULyoLdF4YZC7g9iBNlpPnmk5q2UrG+7GGSFKrshtnrgp6ti5MZm9u4skLb77/cLqpdzXXoUjo12kgqEKnwlFV3Su"
    "uQx7ECVo9V7bR9/Sbz0FMLxKc5sXq45jMppa2jsm/lOT5wh+Y0pZPXoiIZ2L9Qs7KIGFf2JgkARDfYqFEVV21dCo"
    "PC//Nv4+sDG2pbgQ62a3XCiiEFo4zcirOoSYUvcJmBn7gcGWhkYKYwKdAEWc7Gs6XP46aB5tlvtO4A==";

static int
self_test_fail(char *why, size_t n, const char *alg, const char *how)
{
	snprintf(why, n, "%s %s", alg, how);
	return -1;
}

int
crypto_self_test(char *why, size_t n)
{
	/* RFC 1321 A.5; FIPS 180-2 B.1; RFC 4231 test case 2. */
	static const char md5_abc[] = "900150983cd24fb0d6963f7d28e17f72";
	static const unsigned char sha256_abc[32] = { 0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf,
		0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96,
		0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad };
	static const unsigned char hmac_jefe[32] = { 0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
		0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
		0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43 };
	static const char jefe_msg[] = "what do ya want for nothing?";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[33], bad[sizeof(self_test_sig)];
	EVP_PKEY *k;
	int good, wrong;

	if (crypto_md5_hex("abc", 3, hex) == -1)
		return self_test_fail(why, n, "MD5",
		    "is not available from the crypto library (an OpenSSL configuration or FIPS "
		    "policy without it?); every gateway signs with it");
	if (strcmp(hex, md5_abc) != 0)
		return self_test_fail(why, n, "MD5", "gave a wrong digest for \"abc\"");
	if (EVP_Digest("abc", 3, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return self_test_fail(why, n, "SHA-256",
		    "is not available from the crypto library; RSA signatures and webhook HMACs "
		    "need it");
	if (memcmp(md, sha256_abc, 32) != 0)
		return self_test_fail(why, n, "SHA-256", "gave a wrong digest for \"abc\"");
	if (crypto_hmac_sha256("Jefe", 4, jefe_msg, sizeof(jefe_msg) - 1, md) == -1)
		return self_test_fail(why, n, "HMAC-SHA256",
		    "is not available from the crypto library; webhook signatures need it");
	if (memcmp(md, hmac_jefe, 32) != 0)
		return self_test_fail(why, n, "HMAC-SHA256",
		    "gave a wrong MAC for RFC 4231 case 2");
	if ((k = crypto_pkey_load_pem(self_test_pem, sizeof(self_test_pem) - 1)) == NULL)
		return self_test_fail(why, n, "RSA",
		    "public keys cannot be loaded by the crypto library; epay V2 needs them");
	good = crypto_rsa_sha256_verify(k, SELF_TEST_MESSAGE, sizeof(SELF_TEST_MESSAGE) - 1,
	    self_test_sig, sizeof(self_test_sig) - 1);
	memcpy(bad, self_test_sig, sizeof(bad));
	bad[10] = bad[10] == 'A' ? 'B' : 'A';
	wrong = crypto_rsa_sha256_verify(k, SELF_TEST_MESSAGE, sizeof(SELF_TEST_MESSAGE) - 1, bad,
	    sizeof(bad) - 1);
	crypto_pkey_free(k);
	if (good != 1)
		return self_test_fail(why, n, "RSA (SHA256withRSA) verification",
		    good == -1 ? "is not available from the crypto library"
			       : "refused a good signature");
	if (wrong != 0)
		return self_test_fail(why, n, "RSA (SHA256withRSA) verification",
		    wrong == -1 ? "failed on a bad signature" : "accepted a bad signature");
	return 0;
}

int
crypto_random(void *buf, size_t n)
{
	if (n > INT_MAX)
		return -1;
	return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}
