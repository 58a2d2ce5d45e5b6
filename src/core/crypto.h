/* Thin wrappers over OpenSSL libcrypto. */
#ifndef PAYRELAY_CRYPTO_H
#define PAYRELAY_CRYPTO_H

#include <stddef.h>

#include "util.h"

struct evp_pkey_st;

/* out: 33 bytes, lowercase hex md5 of data. Returns 0, or -1 when the
 * crypto library cannot compute it (MD5 unavailable, e.g. under a FIPS
 * policy): then `out` is the empty string, never a digest. */
int crypto_md5_hex(const void *data, size_t len, char out[33]) WUR;
/* out: 32 bytes of HMAC-SHA256. Returns 0 or -1. */
int crypto_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
    unsigned char out[32]) WUR;
/* Base64 (standard alphabet, padded). The caller frees the result. */
char *crypto_base64_encode(const void *data, size_t len);
/* Decodes standard base64 (white space not allowed). The caller frees *out.
 * Returns 0 or -1 on malformed input. */
int crypto_base64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen) WUR;
/* Loads a PEM public key; returns NULL on error. Free with crypto_pkey_free. */
struct evp_pkey_st *crypto_pkey_load_pem(const char *pem, size_t len);
void crypto_pkey_free(struct evp_pkey_st *k);
/* Verifies a base64 SHA256withRSA (PKCS#1 v1.5) signature over data.
 * Returns 1 valid, 0 invalid (including malformed base64), -1 when the
 * crypto library failed (no key, SHA-256 or RSA unavailable, no memory). */
int crypto_rsa_sha256_verify(struct evp_pkey_st *k, const void *data, size_t len,
    const char *sig_b64, size_t siglen) WUR;
/* Known-answer tests of every algorithm payrelay relies on: MD5, SHA-256,
 * HMAC-SHA256 and SHA256withRSA verification (a good signature verifies,
 * a bad one does not). Returns 0, or -1 with `why` naming the algorithm
 * that failed and how. Run once at start: payrelayd refuses to run
 * without them (SPEC §2.5). */
int crypto_self_test(char *why, size_t n) WUR;
/* Fills buf with n cryptographically random bytes. Returns 0 or -1. */
int crypto_random(void *buf, size_t n) WUR;

#endif
