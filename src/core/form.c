#include "form.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void
params_init(struct params *p)
{
	p->v = NULL;
	p->n = 0;
	p->cap = 0;
}

void
params_free(struct params *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++) {
		free(p->v[i].name);
		free(p->v[i].value);
	}
	free(p->v);
	params_init(p);
}

const struct param *
params_get(const struct params *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (strcmp(p->v[i].name, name) == 0)
			return &p->v[i];
	return NULL;
}

const char *
params_value(const struct params *p, const char *name)
{
	const struct param *pa = params_get(p, name);

	return pa == NULL ? NULL : pa->value;
}

/* Takes ownership of name and value (on success and on failure). */
static enum form_error
params_put(struct params *p, char *name, char *value, size_t vlen)
{
	struct param *nv;
	size_t i;

	for (i = 0; i < p->n; i++) {
		if (strcmp(p->v[i].name, name) == 0) {
			free(p->v[i].value);
			free(name);
			p->v[i].value = value;
			p->v[i].vlen = vlen;
			return FORM_OK;
		}
	}
	if (p->n >= FORM_MAX_PARAMS) {
		free(name);
		free(value);
		return FORM_TOO_MANY;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;

		if ((nv = realloc(p->v, cap * sizeof(*nv))) == NULL) {
			free(name);
			free(value);
			return FORM_NOMEM;
		}
		p->v = nv;
		p->cap = cap;
	}
	p->v[p->n].name = name;
	p->v[p->n].value = value;
	p->v[p->n].vlen = vlen;
	p->n++;
	return FORM_OK;
}

int
params_set(struct params *p, const char *name, const char *value, size_t vlen)
{
	char *n = strdup(name), *v = malloc(vlen + 1);

	if (n == NULL || v == NULL) {
		free(n);
		free(v);
		return -1;
	}
	memcpy(v, value, vlen);
	v[vlen] = '\0';
	return params_put(p, n, v, vlen) == FORM_OK ? 0 : -1;
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* PHP's urldecode(): '+' is a space, %XX a byte, a bad escape stays as it is.
 * Writes at most n bytes plus a NUL to out (decoding never grows). */
static size_t
url_decode(char *out, const char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		int hi, lo;

		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%' && i + 2 < n &&
		    (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
		    (lo = hexval((unsigned char)s[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return o;
}

/* PHP's php_register_variable: leading spaces dropped, ' ' and '.' become
 * '_', the name ends at a NUL. Returns the new length. */
static size_t
php_name(char *name, size_t len)
{
	size_t i = 0, o = 0;

	len = strnlen(name, len);
	while (i < len && name[i] == ' ')
		i++;
	for (; i < len; i++) {
		char c = name[i];

		name[o++] = (c == ' ' || c == '.') ? '_' : c;
	}
	name[o] = '\0';
	return o;
}

enum form_error
form_decode(struct params *p, const char *s, size_t len)
{
	const char *end = s + len;

	while (s < end) {
		const char *amp = memchr(s, '&', (size_t)(end - s));
		const char *pair_end = amp ? amp : end;
		const char *eq = memchr(s, '=', (size_t)(pair_end - s));
		const char *name_end = eq ? eq : pair_end;
		size_t nraw = (size_t)(name_end - s);
		size_t vraw = eq ? (size_t)(pair_end - eq - 1) : 0;
		char *name = NULL, *value = NULL;
		size_t nlen, vlen;
		enum form_error err;

		if (nraw == 0)
			goto next; /* "&&" or "=x": PHP skips it */
		if ((name = malloc(nraw + 1)) == NULL)
			return FORM_NOMEM;
		nlen = php_name(name, url_decode(name, s, nraw));
		if (nlen == 0) {
			free(name);
			goto next;
		}
		if (nlen > FORM_MAX_NAME) {
			free(name);
			return FORM_NAME_TOO_LONG;
		}
		if (strchr(name, '[') != NULL) {
			free(name);
			return FORM_ARRAY_NAME;
		}
		if ((value = malloc(vraw + 1)) == NULL) {
			free(name);
			return FORM_NOMEM;
		}
		vlen = eq ? url_decode(value, eq + 1, vraw) : 0;
		value[vlen] = '\0';
		if (vlen > FORM_MAX_VALUE) {
			free(name);
			free(value);
			return FORM_VALUE_TOO_LONG;
		}
		if ((err = params_put(p, name, value, vlen)) != FORM_OK)
			return err;
next:
		s = amp ? amp + 1 : end;
	}
	return FORM_OK;
}

const char *
form_error_str(enum form_error e)
{
	switch (e) {
	case FORM_OK:
		return "ok";
	case FORM_TOO_MANY:
		return "too many parameters";
	case FORM_NAME_TOO_LONG:
		return "parameter name too long";
	case FORM_VALUE_TOO_LONG:
		return "parameter value too long";
	case FORM_ARRAY_NAME:
		return "array parameter names are not accepted";
	case FORM_NOMEM:
		return "out of memory";
	}
	return "unknown";
}

bool
form_content_type_ok(const char *ct)
{
	static const char form[] = "application/x-www-form-urlencoded";
	size_t n = sizeof(form) - 1;

	if (ct == NULL)
		return true;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return strncasecmp(ct, form, n) == 0 &&
	    (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}
