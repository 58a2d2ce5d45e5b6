/* payrelayctl's output for people: values from the API made safe for a
 * terminal, times in UTC, aligned tables. */
#ifndef PAYRELAY_CTL_OUT_H
#define PAYRELAY_CTL_OUT_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "util.h"

/* Writes `s` with control characters (C0, DEL, C1) as \xNN: a gateway's
 * field must not be able to drive the on-call engineer's terminal. */
void ctl_out_safe(FILE *f, const char *s);

/* "2026-11-22T10:00:00Z" (UTC, whole seconds) into out[32]. */
void ctl_out_time(char out[32], int64_t ms);

/* Parses an ISO-8601 time (2026-11-22T10:00:00Z, with optional fraction
 * of a second and a Z or ±HH:MM offset) or unix milliseconds (digits
 * only) into unix milliseconds. Returns 0, or -1 when it is neither. */
int ctl_out_parse_time(const char *s, int64_t *ms) WUR;

/* An integer member given as a JSON integer or as a string of digits (as
 * Redis hashes hold them). Returns 0 and sets *v, or -1. */
int ctl_out_json_int(const json_t *v, int64_t *out) WUR;

/* A member as text for a table cell or a "key: value" line: strings as
 * they are, numbers in decimal, true/false, NULL when missing or null.
 * The caller frees the result. */
char *ctl_out_json_text(const json_t *v);

/* An aligned table with a header row; cells are copied and made safe. */
struct ctl_table {
	size_t ncols;
	size_t nrows; /* including the header */
	char **cells; /* nrows * ncols */
	size_t cap;   /* rows */
	size_t *width;
};

int ctl_table_init(struct ctl_table *t, const char *const *header, size_t ncols) WUR;
/* `row` has ncols cells; NULL cells print as "-". */
int ctl_table_add(struct ctl_table *t, const char *const *row) WUR;
void ctl_table_print(const struct ctl_table *t, FILE *f);
void ctl_table_free(struct ctl_table *t);

#endif
