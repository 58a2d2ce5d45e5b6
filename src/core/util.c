#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

void
sbuf_init(struct sbuf *b)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

void
sbuf_free(struct sbuf *b)
{
	if (b == NULL)
		return;
	free(b->p);
	sbuf_init(b);
}

void
sbuf_reset(struct sbuf *b)
{
	b->len = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

int
sbuf_reserve(struct sbuf *b, size_t more)
{
	size_t need, cap;
	char *np;

	if (more > SIZE_MAX - b->len - 1)
		return -1;
	need = b->len + more + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if ((np = realloc(b->p, cap)) == NULL)
		return -1;
	b->p = np;
	b->cap = cap;
	return 0;
}

int
sbuf_add(struct sbuf *b, const void *data, size_t n)
{
	if (sbuf_reserve(b, n) == -1)
		return -1;
	if (n > 0)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int
sbuf_adds(struct sbuf *b, const char *s)
{
	return sbuf_add(b, s, strlen(s));
}

int
sbuf_addc(struct sbuf *b, char c)
{
	return sbuf_add(b, &c, 1);
}

int
sbuf_vprintf(struct sbuf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0 || sbuf_reserve(b, (size_t)n) == -1)
		return -1;
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int
sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = sbuf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

char *
sbuf_steal(struct sbuf *b)
{
	char *p = b->p;

	if (p == NULL)
		p = calloc(1, 1);
	sbuf_init(b);
	return p;
}

void
hex_lower(char *out, const unsigned char *in, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

bool
ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	/* The lengths are public (a hex digest's, a token's); the bytes are
	 * compared by OpenSSL's constant-time memcmp. */
	if (alen != blen)
		return false;
	return alen == 0 || CRYPTO_memcmp(a, b, alen) == 0;
}

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
format_iso8601_ms(char out[25], int64_t ms)
{
	/* The seconds part changes once a second: formatted once for all
	 * the events of that second (single-threaded callers). */
	static time_t cached_secs = (time_t)-1;
	static char cached[20];
	time_t secs = (time_t)(ms / 1000);
	unsigned frac = (unsigned)(ms % 1000) % 1000u;
	struct tm tm;

	if (secs != cached_secs) {
		gmtime_r(&secs, &tm);
		if (strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm) != 19) {
			memcpy(out, "1970-01-01T00:00:00.000Z", 25);
			return;
		}
		cached_secs = secs;
	}
	memcpy(out, cached, 19);
	out[19] = '.';
	out[20] = (char)('0' + frac / 100);
	out[21] = (char)('0' + frac / 10 % 10);
	out[22] = (char)('0' + frac % 10);
	out[23] = 'Z';
	out[24] = '\0';
}

char *
xstrdup(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}

char *
read_file(const char *path, size_t max, size_t *len_out)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t r;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	if (fstat(fd, &st) == -1)
		goto fail;
	if (st.st_size < 0 || (size_t)st.st_size > max) {
		errno = EFBIG;
		goto fail;
	}
	if ((buf = malloc(max + 1)) == NULL)
		goto fail;
	/* Read to EOF rather than trusting st_size: /proc files and pipes lie. */
	while ((r = read(fd, buf + len, max + 1 - len)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		len += (size_t)r;
		if (len > max) {
			errno = EFBIG;
			goto fail;
		}
	}
	buf[len] = '\0';
	close(fd);
	if (len_out != NULL)
		*len_out = len;
	return buf;
fail:
	saved = errno;
	free(buf);
	close(fd);
	errno = saved;
	return NULL;
}
