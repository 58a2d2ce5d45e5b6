/* What the family tests share (test_family.c, test_family_NAME.c):
 * fixtures, the reference signing string of SPEC §2 the families' reference
 * signers build on, and the check of a verified callback's event. Each
 * family's own signer is in its test file. */
#ifndef PAYRELAY_TEST_FAMILY_REF_H
#define PAYRELAY_TEST_FAMILY_REF_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "event.h"
#include "family.h"
#include "form.h"

/* What a verified callback must produce. */
struct want {
	const char *trade_no, *out_trade_no, *raw_status;
	bool paid;
	const char *amount, *paid_amount;
	const char *method, *subject, *passthrough; /* NULL: not checked / absent */
	const char *passthrough_param;              /* name of the passthrough field */
};

/* Fixtures: a channel of the family called `family` (its strings owned,
 * chan_free frees them), parameters, verify. */
void chan_init(struct channel *ch, const char *name, const char *family, enum sign_type st,
    const char *merchant_id, const char *key);
void chan_free(struct channel *ch);
void chan_set(char **field, const char *value);
void pset(struct params *p, const char *name, const char *value);
void params_from(struct params *p, json_t *obj, const char *drop);
enum verdict run(const struct channel *ch, const struct params *p, time_t now, struct event *ev);
void expect(const struct channel *ch, const struct params *p, time_t now, enum verdict want,
    const char *what);
/* The reference "k=v&k=v" signing string of SPEC §2 (the caller frees it),
 * and the hex MD5 of a then b. */
int cmp_param_name(const void *a, const void *b);
int php_blank(const char *s, size_t n);
int excluded(const char *name, const char *const *exclude);
char *ref_sign_string(const struct params *p, const char *const *exclude, unsigned skip,
    size_t *lenp);
void md5_concat(const char *a, size_t alen, const char *b, char out[33]);
int64_t ref_fen(const char *s);
void check_event(const char *desc, const struct channel *ch, const struct event *ev,
    const struct want *w);
void assert_sign_string(const struct params *p, const char *const *exclude, unsigned skip,
    const char *want);
/* Changes one hex digit of `s` in place. */
void flip_hex_digit(char *s, size_t i);
/* A payment to create (SPEC §10.1) with the fixed URLs and clock of the
 * tests; the rest NULL. */
void pay_request_init(struct pay_request *pr, const char *out_trade_no, const char *amount);
/* Decodes a form (a body or a query string) into p (params_init'd here). */
void form_params(struct params *p, const char *form);

/* Polls (each family's query and answers, in its test file; test_poll.c). */
#define POLL_API "https://pay.example.com"
/* A channel of `family` with an MD5 key and api_base POLL_API. */
void poll_chan_init(struct channel *ch, const char *name, const char *family,
    const char *merchant_id, const char *key);
/* Asserts what every detail must be: one short line, never the key. */
void check_detail(const struct channel *ch, const struct poll_answer *a);
/* Parses `body` for `out` into a fresh `a`, which the caller frees. */
enum poll_state parse(const struct channel *ch, const char *out, const char *body,
    struct poll_answer *a);
void expect_state(const struct channel *ch, const char *out, const char *body, enum poll_state want,
    const char *detail_has);
/* The id verify() gives the vector's callback, on channel `ch`. */
void callback_id(const struct channel *ch, json_t *vec, char id[EVENT_ID_LEN + 1]);
/* The compact JSON text of `o`, which it takes; the caller frees it. */
char *dump(json_t *o);

#endif
