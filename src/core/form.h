/* Decoding of application/x-www-form-urlencoded data exactly as PHP builds
 * $_GET / $_POST: '&' separates pairs, '+' is a space, %XX is a byte (a bad
 * escape stays literal), a pair without '=' has the empty value, a pair with
 * an empty name is skipped, a repeated name keeps its last value (in the
 * position of its first occurrence), leading spaces of a name are dropped and
 * ' ' and '.' in a name become '_', and a name ends at its first NUL byte.
 * Names with '[' (PHP arrays) are refused: no gateway sends them. */
#ifndef PAYRELAY_FORM_H
#define PAYRELAY_FORM_H

#include "util.h"

/* SPEC §3 limits. */
#define FORM_MAX_PARAMS 64
#define FORM_MAX_NAME 64
#define FORM_MAX_VALUE 4096

struct param {
	char *name;  /* NUL-terminated, no NUL inside */
	char *value; /* NUL-terminated; may hold NUL bytes: use vlen */
	size_t vlen;
};

struct params {
	struct param *v;
	size_t n;
	size_t cap;
};

enum form_error {
	FORM_OK = 0,
	FORM_TOO_MANY, /* more than FORM_MAX_PARAMS distinct names */
	FORM_NAME_TOO_LONG,
	FORM_VALUE_TOO_LONG,
	FORM_ARRAY_NAME, /* name with '[' */
	FORM_NOMEM,
};

void params_init(struct params *p);
void params_free(struct params *p);
/* Decodes `len` bytes of `s` into `p`, replacing values of names already
 * there (so decoding the query and then the body makes the body win). */
enum form_error form_decode(struct params *p, const char *s, size_t len) WUR;
const char *form_error_str(enum form_error e);
/* Whether a body of Content-Type `ct` is form data:
 * "application/x-www-form-urlencoded", maybe with parameters; absent (NULL)
 * counts as form data too (some gateways post bare concatenations). */
bool form_content_type_ok(const char *ct);

/* Sets name=value (copies both), replacing an existing value. */
int params_set(struct params *p, const char *name, const char *value, size_t vlen) WUR;
/* The parameter named `name`, or NULL. */
const struct param *params_get(const struct params *p, const char *name);
/* Its value as a C string, or NULL when absent. */
const char *params_value(const struct params *p, const char *name);

#endif
