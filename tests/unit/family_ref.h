/* What the per-family tests share (test_family_NAME.c): fixtures, the
 * reference signers written from SPEC §2 (checked against the vectors first,
 * so a refusal can only come from the rule under test), and the check of a
 * verified callback's event. */
#ifndef PAYRELAY_TEST_FAMILY_REF_H
#define PAYRELAY_TEST_FAMILY_REF_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "config.h"
#include "event.h"
#include "family.h"
#include "form.h"

extern const char *const epay_exclude[];
extern const char *const payindex_exclude[];

/* What a verified callback must produce. */
struct want {
	const char *trade_no, *out_trade_no, *raw_status;
	bool paid;
	const char *amount, *paid_amount;
	const char *method, *subject, *passthrough; /* NULL: not checked / absent */
	const char *passthrough_param;              /* name of the passthrough field */
};

void chan_init(struct channel *ch, const char *name, const char *family, enum sign_type st,
    const char *merchant_id, const char *key);
void chan_free(struct channel *ch);
void chan_set(char **field, const char *value);
void pset(struct params *p, const char *name, const char *value);
void params_from(struct params *p, json_t *obj, const char *drop);
enum verdict run(const struct channel *ch, const struct params *p, time_t now, struct event *ev);
void expect(const struct channel *ch, const struct params *p, time_t now, enum verdict want,
    const char *what);
int cmp_param_name(const void *a, const void *b);
int php_blank(const char *s, size_t n);
int excluded(const char *name, const char *const *exclude);
char *ref_sign_string(const struct params *p, const char *const *exclude, unsigned skip,
    size_t *lenp);
void md5_concat(const char *a, size_t alen, const char *b, char out[33]);
void epay_md5_sign(const struct params *p, const char *key, char out[33]);
void epay_resign(struct params *p, const char *key);
void payindex_md5_sign(const struct params *p, const char *key, char out[33]);
void payindex_resign(struct params *p, const char *key);
void gatepay_md5_sign(const struct params *p, const char *appkey, const char *appsecret,
    char out[33]);
void gatepay_resign(struct params *p, const char *appkey, const char *appsecret);
EVP_PKEY *load_private_key(const json_t *root);
char *rsa_sign_b64(EVP_PKEY *k, const char *data, size_t len);
char *epay_rsa_sign(const struct params *p, EVP_PKEY *k);
void rsa_resign(struct params *p, EVP_PKEY *k);
int64_t ref_fen(const char *s);
void check_event(const char *desc, const struct channel *ch, const struct event *ev,
    const struct want *w);
struct want epay_want(const struct params *p);
struct want gatepay_want(const struct params *p);
struct want payindex_want(const struct params *p);
void assert_sign_string(const struct params *p, const char *const *exclude, unsigned skip,
    const char *want);
/* Changes one hex digit of `s` in place. */
void flip_hex_digit(char *s, size_t i);

#endif
