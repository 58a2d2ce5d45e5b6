/* Small helpers shared by every module: a growable byte buffer, hex, time. */
#ifndef PAYRELAY_UTIL_H
#define PAYRELAY_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WUR __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* A growable byte buffer; `p` is always NUL-terminated after a successful
 * append, so it can be used as a C string when no NUL was appended. */
struct sbuf {
	char *p;
	size_t len;
	size_t cap;
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_reset(struct sbuf *b);
/* Makes room for `more` bytes (and a NUL) beyond the current length. */
int sbuf_reserve(struct sbuf *b, size_t more) WUR;
int sbuf_add(struct sbuf *b, const void *data, size_t n) WUR;
int sbuf_adds(struct sbuf *b, const char *s) WUR;
int sbuf_addc(struct sbuf *b, char c) WUR;
int sbuf_printf(struct sbuf *b, const char *fmt, ...) PRINTF_LIKE(2, 3) WUR;
int sbuf_vprintf(struct sbuf *b, const char *fmt, va_list ap) PRINTF_LIKE(2, 0) WUR;
/* Hands the buffer to the caller, who frees it; `b` is left empty. */
char *sbuf_steal(struct sbuf *b);

/* Writes 2*n lowercase hex digits and a NUL to `out`. */
void hex_lower(char *out, const unsigned char *in, size_t n);

/* Equal in time that depends only on the lengths, never on the contents. */
bool ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Wall-clock time in milliseconds since the epoch. */
int64_t now_ms(void);
/* Formats `ms` as 2026-11-22T10:00:00.123Z into out[25]. */
void format_iso8601_ms(char out[25], int64_t ms);

char *xstrdup(const char *s);
/* Reads a whole file (at most `max` bytes) into a NUL-terminated buffer the
 * caller frees. Returns NULL with errno set (EFBIG when over `max`). */
char *read_file(const char *path, size_t max, size_t *len_out);

#endif
