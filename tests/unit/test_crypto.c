/* The libcrypto wrappers (crypto.h) and the byte helpers of util.h that the
 * signature checks rely on. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "util.h"
#include "vectors.h"

static void
assert_md5(const void *data, size_t len, const char *want)
{
	char out[33];

	memset(out, 'x', sizeof(out));
	ck_assert_int_eq(crypto_md5_hex(data, len, out), 0);
	ck_assert_int_eq(out[32], '\0');
	ck_assert_str_eq(out, want);
}

START_TEST(test_md5_known)
{
	assert_md5("", 0, "d41d8cd98f00b204e9800998ecf8427e");
	assert_md5("abc", 3, "900150983cd24fb0d6963f7d28e17f72");
	assert_md5("The quick brown fox jumps over the lazy dog", 43,
	    "9e107d9d372bb6826bd81d3542a419d6");
	assert_md5("VIP会员", strlen("VIP会员"), "d0701796d4a2f2aa67529e47d848cb35");
	/* the length counts, not the first NUL */
	assert_md5("a\0b", 3, "70350f6027bce3713f6b76473084309b");
	assert_md5("abcdef", 3, "900150983cd24fb0d6963f7d28e17f72");
}
END_TEST

static void
assert_b64(const char *raw, const char *want)
{
	char *enc = crypto_base64_encode(raw, strlen(raw));
	unsigned char *dec = NULL;
	size_t declen = 12345;

	ck_assert_ptr_nonnull(enc);
	ck_assert_str_eq(enc, want);
	ck_assert_int_eq(crypto_base64_decode(want, strlen(want), &dec, &declen), 0);
	ck_assert_uint_eq(declen, strlen(raw));
	if (declen > 0)
		ck_assert_mem_eq(dec, raw, declen);
	free(dec);
	free(enc);
}

START_TEST(test_base64_rfc4648)
{
	assert_b64("", "");
	assert_b64("f", "Zg==");
	assert_b64("fo", "Zm8=");
	assert_b64("foo", "Zm9v");
	assert_b64("foob", "Zm9vYg==");
	assert_b64("fooba", "Zm9vYmE=");
	assert_b64("foobar", "Zm9vYmFy");
	/* the standard alphabet, not the URL one */
	assert_b64("\xfb\xff\xbf", "+/+/");
}
END_TEST

START_TEST(test_base64_round_trip_binary)
{
	unsigned char data[300];
	size_t n, i;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + (i >> 3));
	data[0] = 0x00;
	data[1] = 0xff;
	for (n = 0; n <= sizeof(data); n += (n < 10 ? 1 : 37)) {
		char *enc = crypto_base64_encode(data, n);
		unsigned char *dec = NULL;
		size_t declen = 0;

		ck_assert_ptr_nonnull(enc);
		/* padded, one line: 4 * ceil(n / 3) characters, no newline */
		ck_assert_uint_eq(strlen(enc), (n + 2) / 3 * 4);
		ck_assert_ptr_null(strchr(enc, '\n'));
		ck_assert_msg(crypto_base64_decode(enc, strlen(enc), &dec, &declen) == 0,
		    "decode of the encoding of %zu bytes failed", n);
		ck_assert_uint_eq(declen, n);
		if (n > 0)
			ck_assert_mem_eq(dec, data, n);
		free(dec);
		free(enc);
	}
}
END_TEST

START_TEST(test_base64_decode_uses_len)
{
	unsigned char *dec = NULL;
	size_t declen = 0;

	ck_assert_int_eq(crypto_base64_decode("Zm9vYmFy", 4, &dec, &declen), 0);
	ck_assert_uint_eq(declen, 3);
	ck_assert_mem_eq(dec, "foo", 3);
	free(dec);
}
END_TEST

START_TEST(test_base64_malformed)
{
	static const char *const bad[] = {
		"Zm9v!",
		"Zm9",
		"Zg",
		"Zg=",
		"Zg===",
		"Z===",
		"====",
		"=Zm9",
		"Zm=v",
		"Zg==Zm9v",
		"Zm9v\n",
		"Zm 9v",
		" Zm9v",
		"Zm9v\r\n",
		"Zm-_",
		"Zm9v====",
		"Zm9v.",
		"\xc3\xa9Zm9",
		"A",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned char *dec = NULL;
		size_t declen = 0;
		int rc = crypto_base64_decode(bad[i], strlen(bad[i]), &dec, &declen);

		ck_assert_msg(rc == -1, "crypto_base64_decode(\"%s\") = %d, want -1", bad[i], rc);
		if (rc == 0)
			free(dec);
	}
}
END_TEST

START_TEST(test_base64_nul_inside)
{
	unsigned char *dec = NULL;
	size_t declen = 0;
	int rc = crypto_base64_decode("Zm9v\0Zm9v", 9, &dec, &declen);

	ck_assert_int_eq(rc, -1);
	if (rc == 0)
		free(dec);
}
END_TEST

static void
assert_hmac(const void *key, size_t keylen, const char *data, const char *want_hex)
{
	unsigned char mac[32];
	char hex[65];

	ck_assert_int_eq(crypto_hmac_sha256(key, keylen, data, strlen(data), mac), 0);
	hex_lower(hex, mac, sizeof(mac));
	ck_assert_str_eq(hex, want_hex);
}

START_TEST(test_hmac_rfc4231)
{
	unsigned char key[20];

	memset(key, 0x0b, sizeof(key));
	assert_hmac(key, sizeof(key), "Hi There",
	    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	assert_hmac("Jefe", 4, "what do ya want for nothing?",
	    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
END_TEST

START_TEST(test_hmac_standard_webhooks)
{
	json_t *root = vectors_load("standard_webhooks.json");
	json_t *vecs = vectors_array(root, "vectors"), *v;
	size_t i;

	json_array_foreach(vecs, i, v)
	{
		const char *desc = vectors_str(v, "description");
		const char *secret = vectors_str(v, "secret");
		const char *msg_id = vectors_str(v, "msg_id");
		const char *payload = vectors_str(v, "payload");
		const char *sig = vectors_str(v, "signature");
		json_int_t ts = json_integer_value(json_object_get(v, "timestamp"));
		unsigned char *key = NULL, mac[32];
		size_t keylen = 0;
		char *msg, *b64;
		size_t msglen;

		ck_assert_msg(strncmp(secret, "whsec_", 6) == 0, "%s: secret prefix", desc);
		ck_assert_msg(strncmp(sig, "v1,", 3) == 0, "%s: signature prefix", desc);
		ck_assert_msg(crypto_base64_decode(secret + 6, strlen(secret + 6), &key, &keylen) ==
			0,
		    "%s: secret did not decode", desc);
		ck_assert_uint_gt(keylen, 0);

		msglen = strlen(msg_id) + strlen(payload) + 32;
		msg = malloc(msglen);
		ck_assert_ptr_nonnull(msg);
		snprintf(msg, msglen, "%s.%" JSON_INTEGER_FORMAT ".%s", msg_id, ts, payload);

		ck_assert_int_eq(crypto_hmac_sha256(key, keylen, msg, strlen(msg), mac), 0);
		b64 = crypto_base64_encode(mac, sizeof(mac));
		ck_assert_ptr_nonnull(b64);
		ck_assert_msg(strcmp(b64, sig + 3) == 0, "%s: got v1,%s want %s", desc, b64, sig);

		/* a different body gives a different signature */
		msg[strlen(msg) - 1] ^= 1;
		ck_assert_int_eq(crypto_hmac_sha256(key, keylen, msg, strlen(msg), mac), 0);
		free(b64);
		b64 = crypto_base64_encode(mac, sizeof(mac));
		ck_assert_ptr_nonnull(b64);
		ck_assert_str_ne(b64, sig + 3);

		free(b64);
		free(msg);
		free(key);
	}
	json_decref(root);
}
END_TEST

static struct evp_pkey_st *
load_platform_key(json_t *root)
{
	const char *pem = vectors_str(root, "platform_public_key_pem");
	struct evp_pkey_st *k = crypto_pkey_load_pem(pem, strlen(pem));

	ck_assert_msg(k != NULL, "crypto_pkey_load_pem refused epay_rsa.json's public key");
	return k;
}

START_TEST(test_rsa_verify_vectors)
{
	json_t *root = vectors_load("epay_rsa.json");
	json_t *vecs = vectors_array(root, "vectors"), *v;
	struct evp_pkey_st *k = load_platform_key(root);
	size_t i;

	json_array_foreach(vecs, i, v)
	{
		const char *desc = vectors_str(v, "description");
		const char *data = vectors_str(v, "string_to_sign");
		const char *sig = vectors_str(json_object_get(v, "params"), "sign");
		size_t len = strlen(data);
		char *copy = strdup(data);
		int rc;

		ck_assert_ptr_nonnull(copy);
		rc = crypto_rsa_sha256_verify(k, data, len, sig, strlen(sig));
		ck_assert_msg(rc == 1, "%s: verify = %d, want 1", desc, rc);

		/* one byte flipped anywhere in the data */
		copy[0] ^= 0x01;
		rc = crypto_rsa_sha256_verify(k, copy, len, sig, strlen(sig));
		ck_assert_msg(rc == 0, "%s: first byte flipped: verify = %d, want 0", desc, rc);
		copy[0] ^= 0x01;
		copy[len - 1] ^= 0x20;
		rc = crypto_rsa_sha256_verify(k, copy, len, sig, strlen(sig));
		ck_assert_msg(rc == 0, "%s: last byte flipped: verify = %d, want 0", desc, rc);
		/* the data one byte short */
		rc = crypto_rsa_sha256_verify(k, data, len - 1, sig, strlen(sig));
		ck_assert_msg(rc == 0, "%s: truncated data: verify = %d, want 0", desc, rc);
		free(copy);
	}
	json_decref(root);
	crypto_pkey_free(k);
}
END_TEST

START_TEST(test_rsa_verify_bad_signatures)
{
	json_t *root = vectors_load("epay_rsa.json");
	json_t *vecs = vectors_array(root, "vectors");
	json_t *v0 = json_array_get(vecs, 0), *v1 = json_array_get(vecs, 1);
	struct evp_pkey_st *k = load_platform_key(root);
	const char *data = vectors_str(v0, "string_to_sign");
	const char *sig = vectors_str(json_object_get(v0, "params"), "sign");
	const char *other = vectors_str(json_object_get(v1, "params"), "sign");
	size_t len = strlen(data), siglen = strlen(sig);
	char *mod = strdup(sig);

	ck_assert_ptr_nonnull(mod);
	/* another message's valid signature */
	ck_assert_int_eq(crypto_rsa_sha256_verify(k, data, len, other, strlen(other)), 0);
	/* garbage and malformed base64 */
	ck_assert_int_eq(crypto_rsa_sha256_verify(k, data, len, "!!!not base64!!!", 16), 0);
	ck_assert_int_eq(crypto_rsa_sha256_verify(k, data, len, "", 0), 0);
	ck_assert_int_eq(crypto_rsa_sha256_verify(k, data, len, "Zm9v", 4), 0);
	/* the right signature, cut short */
	ck_assert_int_eq(crypto_rsa_sha256_verify(k, data, len, sig, siglen - 4), 0);
	/* one base64 digit changed: a different, wrong signature */
	mod[10] = mod[10] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(crypto_rsa_sha256_verify(k, data, len, mod, siglen), 0);
	/* the signature with white space inside is malformed base64 */
	strcpy(mod, sig);
	mod[20] = ' ';
	ck_assert_int_eq(crypto_rsa_sha256_verify(k, data, len, mod, siglen), 0);

	free(mod);
	crypto_pkey_free(k);
	json_decref(root);
}
END_TEST

START_TEST(test_pkey_load_garbage)
{
	static const char junk[] =
	    "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n";

	ck_assert_ptr_null(crypto_pkey_load_pem(junk, strlen(junk)));
	ck_assert_ptr_null(crypto_pkey_load_pem("", 0));
	crypto_pkey_free(NULL);
}
END_TEST

START_TEST(test_ct_equal)
{
	ck_assert(ct_equal("abc", 3, "abc", 3));
	ck_assert(ct_equal("", 0, "", 0));
	ck_assert(ct_equal("a\0b", 3, "a\0b", 3));
	ck_assert(!ct_equal("abc", 3, "abd", 3));
	ck_assert(!ct_equal("abc", 3, "bbc", 3));
	ck_assert(!ct_equal("a\0b", 3, "a\0c", 3));
	ck_assert(!ct_equal("abc", 3, "abcd", 4));
	ck_assert(!ct_equal("abcd", 4, "abc", 3));
	ck_assert(!ct_equal("abc", 3, "", 0));
	/* lengths, not NUL terminators, decide */
	ck_assert(ct_equal("abcX", 3, "abcY", 3));
}
END_TEST

START_TEST(test_hex_lower)
{
	static const unsigned char in[] = { 0x00, 0x01, 0x0a, 0xab, 0xcd, 0xef, 0x7f, 0xff };
	char out[2 * sizeof(in) + 1];
	char one[3];

	memset(out, 'x', sizeof(out));
	hex_lower(out, in, sizeof(in));
	ck_assert_str_eq(out, "00010aabcdef7fff");

	memset(one, 'x', sizeof(one));
	hex_lower(one, in, 0);
	ck_assert_int_eq(one[0], '\0');
}
END_TEST

START_TEST(test_random)
{
	unsigned char a[32], b[32], zero[32];

	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	memset(zero, 0, sizeof(zero));
	ck_assert_int_eq(crypto_random(a, sizeof(a)), 0);
	ck_assert_int_eq(crypto_random(b, sizeof(b)), 0);
	ck_assert_msg(memcmp(a, b, sizeof(a)) != 0, "two draws of 32 random bytes are equal");
	ck_assert_msg(memcmp(a, zero, sizeof(a)) != 0, "32 random bytes are all zero");
	ck_assert_int_eq(crypto_random(a, 0), 0);
}
END_TEST

static Suite *
crypto_suite(void)
{
	Suite *s = suite_create("crypto");
	TCase *tc = tcase_create("digest");

	tcase_add_test(tc, test_md5_known);
	tcase_add_test(tc, test_hmac_rfc4231);
	tcase_add_test(tc, test_hmac_standard_webhooks);
	suite_add_tcase(s, tc);

	tc = tcase_create("base64");
	tcase_add_test(tc, test_base64_rfc4648);
	tcase_add_test(tc, test_base64_round_trip_binary);
	tcase_add_test(tc, test_base64_decode_uses_len);
	tcase_add_test(tc, test_base64_malformed);
	tcase_add_test(tc, test_base64_nul_inside);
	suite_add_tcase(s, tc);

	tc = tcase_create("rsa");
	tcase_add_test(tc, test_rsa_verify_vectors);
	tcase_add_test(tc, test_rsa_verify_bad_signatures);
	tcase_add_test(tc, test_pkey_load_garbage);
	suite_add_tcase(s, tc);

	tc = tcase_create("bytes");
	tcase_add_test(tc, test_ct_equal);
	tcase_add_test(tc, test_hex_lower);
	tcase_add_test(tc, test_random);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(crypto_suite());
}
