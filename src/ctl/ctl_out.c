#include "ctl_out.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* `s` with control characters written as \xNN, appended to `b`. */
static int
ctl_out_clean(struct sbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int rc = 0;

	for (; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			rc |= sbuf_printf(b, "\\x%02x", *p);
		} else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			/* U+0080..U+009F: CSI and friends for some terminals */
			rc |= sbuf_printf(b, "\\x%02x", p[1]);
			p++;
		} else {
			rc |= sbuf_addc(b, (char)*p);
		}
	}
	return rc;
}

void
ctl_out_safe(FILE *f, const char *s)
{
	struct sbuf b;

	sbuf_init(&b);
	if (ctl_out_clean(&b, s) == 0 && b.p != NULL)
		fputs(b.p, f);
	sbuf_free(&b);
}

void
ctl_out_time(char out[32], int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms < 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "%" PRId64, ms);
}

/* Reads exactly `n` digits at *p into *v and moves past them. */
static int
digits(const char **p, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		*v = *v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return 0;
}

int
ctl_out_parse_time(const char *s, int64_t *ms)
{
	const char *p = s;
	int year, mon, day, hour = 0, min = 0, sec = 0, frac = 0, scale = 1000, oh, om;
	int64_t offset = 0;
	struct tm tm;
	time_t t;

	if (*s == '\0')
		return -1;
	if (strspn(s, "0123456789") == strlen(s)) {
		long long v;

		errno = 0;
		v = strtoll(s, NULL, 10);
		if (errno != 0)
			return -1;
		*ms = v;
		return 0;
	}
	if (digits(&p, 4, &year) == -1 || *p++ != '-' || digits(&p, 2, &mon) == -1 || *p++ != '-' ||
	    digits(&p, 2, &day) == -1)
		return -1;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (digits(&p, 2, &hour) == -1 || *p++ != ':' || digits(&p, 2, &min) == -1)
			return -1;
		if (*p == ':') {
			p++;
			if (digits(&p, 2, &sec) == -1)
				return -1;
			if (*p == '.' || *p == ',') {
				p++;
				if (*p < '0' || *p > '9')
					return -1;
				/* milliseconds: the rest of the fraction is dropped */
				for (; *p >= '0' && *p <= '9'; p++) {
					scale /= 10;
					frac += (*p - '0') * scale;
				}
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1;

			if (digits(&p, 2, &oh) == -1)
				return -1;
			if (*p == ':')
				p++;
			if (digits(&p, 2, &om) == -1 || oh > 23 || om > 59)
				return -1;
			offset = sign * ((int64_t)oh * 3600 + om * 60) * 1000;
		} else {
			return -1; /* a time without a zone would be a guess */
		}
	}
	if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
	    sec > 59 || year < 1970)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm);
	/* timegm normalizes 31 February into March: refuse what moved. */
	if (t == (time_t)-1 || tm.tm_mday != day || tm.tm_mon != mon - 1)
		return -1;
	*ms = (int64_t)t * 1000 + frac - offset;
	return 0;
}

int
ctl_out_json_int(const json_t *v, int64_t *out)
{
	const char *s;
	char *end;
	long long n;

	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if ((s = json_string_value(v)) == NULL || *s == '\0')
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = n;
	return 0;
}

char *
ctl_out_json_text(const json_t *v)
{
	char buf[64];

	if (v == NULL || json_is_null(v))
		return NULL;
	if (json_is_string(v))
		return xstrdup(json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		return xstrdup(buf);
	}
	if (json_is_real(v)) {
		snprintf(buf, sizeof(buf), "%g", json_real_value(v));
		return xstrdup(buf);
	}
	if (json_is_boolean(v))
		return xstrdup(json_is_true(v) ? "true" : "false");
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* Columns a cell takes: UTF-8 code points (wide CJK glyphs count one). */
static size_t
ctl_out_width(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

int
ctl_table_init(struct ctl_table *t, const char *const *header, size_t ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	if ((t->width = calloc(ncols, sizeof(*t->width))) == NULL)
		return -1;
	return ctl_table_add(t, header);
}

int
ctl_table_add(struct ctl_table *t, const char *const *row)
{
	size_t i;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **nc = realloc(t->cells, cap * t->ncols * sizeof(*nc));

		if (nc == NULL)
			return -1;
		t->cells = nc;
		t->cap = cap;
	}
	for (i = 0; i < t->ncols; i++) {
		struct sbuf b;
		size_t w;

		sbuf_init(&b);
		if (sbuf_reserve(&b, 0) == -1 ||
		    ctl_out_clean(&b, row[i] != NULL && row[i][0] != '\0' ? row[i] : "-") == -1) {
			sbuf_free(&b);
			while (i-- > 0)
				free(t->cells[t->nrows * t->ncols + i]);
			return -1;
		}
		t->cells[t->nrows * t->ncols + i] = sbuf_steal(&b);
		w = ctl_out_width(t->cells[t->nrows * t->ncols + i]);
		if (w > t->width[i])
			t->width[i] = w;
	}
	t->nrows++;
	return 0;
}

void
ctl_table_print(const struct ctl_table *t, FILE *f)
{
	size_t r, i;

	for (r = 0; r < t->nrows; r++) {
		for (i = 0; i < t->ncols; i++) {
			const char *c = t->cells[r * t->ncols + i];

			fputs(c, f);
			if (i + 1 < t->ncols) {
				size_t pad = t->width[i] - ctl_out_width(c) + 2;

				while (pad-- > 0)
					fputc(' ', f);
			}
		}
		fputc('\n', f);
	}
}

void
ctl_table_free(struct ctl_table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; t->cells != NULL && i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->width);
	memset(t, 0, sizeof(*t));
}
