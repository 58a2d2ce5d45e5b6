#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/poll.h> /* <poll.h> would find src/daemon/poll.h */
#include <sys/types.h>
#include <unistd.h>

enum log_level log_min_level = LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void
log_set_level(enum log_level lvl)
{
	log_min_level = lvl;
}

int
log_parse_level(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* What may end a line whatever happened before: a closing quote, the two
 * marks and the newline. The text of the line stops short of it. */
#define MARK_FORMAT " format_error=1"
#define MARK_CUT " truncated=1"
#define TAIL_MAX (1 + sizeof(MARK_FORMAT) - 1 + sizeof(MARK_CUT) - 1 + 1)

/* One line being built. Once something did not fit, `cut` is set and
 * nothing more is added, so the line never ends inside an escape or a
 * UTF-8 sequence, and a number is never shortened into another number. */
struct line {
	char buf[LOG_LINE_MAX];
	size_t len;
	bool quoted; /* a quote is open */
	bool cut;
	bool bad; /* an unsupported conversion stopped the kv text */
};

#define LINE_ROOM (LOG_LINE_MAX - TAIL_MAX)

/* All of s[0..n) or nothing. */
static void
put_all(struct line *l, const void *s, size_t n)
{
	if (l->cut)
		return;
	if (n > LINE_ROOM - l->len) {
		l->cut = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

/* As much of s[0..n) as fits: only for bytes that are each a character. */
static void
put_some(struct line *l, const void *s, size_t n)
{
	if (l->cut)
		return;
	if (n > LINE_ROOM - l->len) {
		n = LINE_ROOM - l->len;
		l->cut = true;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
put_quote(struct line *l)
{
	if (l->cut)
		return;
	if (l->len >= LINE_ROOM) {
		l->cut = true;
		return;
	}
	l->buf[l->len++] = '"';
	l->quoted = !l->quoted;
}

static void
put_hex(struct line *l, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char e[4] = { '\\', 'x', hex[c >> 4], hex[c & 0xf] };

	put_all(l, e, sizeof(e));
}

/* The length of the printable UTF-8 character at p[0..n), or 0 when the
 * bytes there are not one: invalid, overlong, a surrogate, above U+10FFFF,
 * or a character that can break or reorder a line on someone's terminal. */
static size_t
utf8_printable(const unsigned char *p, size_t n)
{
	uint32_t cp;
	size_t len, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		cp = p[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	if (cp < 0xa0 || cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff)
		return 0;
	return len;
}

static bool
quoted_plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

/* s[0..n) for the inside of a quoted value (see log.h). */
static void
put_escaped(struct line *l, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n, *run;
	size_t k;

	while (p < end && !l->cut) {
		for (run = p; p < end && quoted_plain(*p); p++)
			;
		put_some(l, run, (size_t)(p - run));
		if (p == end)
			break;
		if (*p == '"' || *p == '\\') {
			char e[2] = { '\\', (char)*p };

			put_all(l, e, sizeof(e));
			p++;
		} else if (*p >= 0x80 && (k = utf8_printable(p, (size_t)(end - p))) > 0) {
			put_all(l, p, k);
			p += k;
		} else
			put_hex(l, *p++);
	}
}

/* Bytes that cannot end a value or start another pair outside quotes. */
static bool
unquoted_safe(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			continue;
		if (strchr("_.:/-+@,*[]", c) == NULL || c == '\0')
			return false;
	}
	return true;
}

static void
put_str(struct line *l, const char *s, size_t n)
{
	if (l->quoted)
		put_escaped(l, s, n);
	else if (unquoted_safe(s, n))
		put_some(l, s, n);
	else {
		put_quote(l);
		put_escaped(l, s, n);
		put_quote(l);
	}
}

static void
put_num(struct line *l, unsigned long long v, bool neg, unsigned base)
{
	char tmp[24], *p = tmp + sizeof(tmp);

	do {
		*--p = "0123456789abcdef"[v % base];
		v /= base;
	} while (v != 0);
	if (neg)
		*--p = '-';
	put_all(l, p, (size_t)(tmp + sizeof(tmp) - p));
}

enum conv_len { LEN_NONE, LEN_L, LEN_LL, LEN_Z };

struct conv {
	char type; /* s, d, u, x or % */
	enum conv_len len;
	bool has_prec;
	size_t prec;
	size_t n; /* characters of the conversion, with its '%' */
};

/* The conversion at f[0] == '%'; false when log_emit does not do it. */
static bool
conv_parse(const char *f, struct conv *c)
{
	const char *p = f + 1;

	memset(c, 0, sizeof(*c));
	if (*p == '.') {
		if (*++p < '0' || *p > '9')
			return false;
		c->has_prec = true;
		for (; *p >= '0' && *p <= '9'; p++) {
			/* More than a line holds is as good as unlimited. */
			if (c->prec <= LOG_LINE_MAX)
				c->prec = c->prec * 10 + (size_t)(*p - '0');
		}
	}
	if (p[0] == 'l' && p[1] == 'l') {
		c->len = LEN_LL;
		p += 2;
	} else if (*p == 'l' || *p == 'z') {
		c->len = *p == 'l' ? LEN_L : LEN_Z;
		p++;
	}
	switch (*p) {
	case '%':
		if (p != f + 1)
			return false;
		break;
	case 's':
		if (c->len != LEN_NONE)
			return false;
		break;
	case 'd':
	case 'u':
	case 'x':
		if (c->has_prec)
			return false;
		break;
	default:
		return false;
	}
	c->type = *p;
	c->n = (size_t)(p + 1 - f);
	return true;
}

bool
log_format_supported(const char *kv)
{
	struct conv c;
	bool quoted = false;

	while (*kv != '\0') {
		if (*kv == '"')
			quoted = !quoted;
		if (*kv != '%') {
			kv++;
			continue;
		}
		if (!conv_parse(kv, &c))
			return false;
		kv += c.n;
	}
	return !quoted;
}

static void
line_kv(struct line *l, const char *kv, va_list ap)
{
	const char *run;
	struct conv c;

	while (*kv != '\0' && !l->cut) {
		for (run = kv; *kv != '\0' && *kv != '%' && *kv != '"' &&
		     (unsigned char)*kv >= 0x20 && *kv != 0x7f;
		     kv++)
			;
		put_some(l, run, (size_t)(kv - run));
		if (*kv == '\0')
			break;
		if (*kv == '"') {
			put_quote(l);
			kv++;
			continue;
		}
		if (*kv != '%') {
			put_hex(l, (unsigned char)*kv++);
			continue;
		}
		/* The arguments after one we cannot read cannot be found. */
		if (!conv_parse(kv, &c)) {
			l->bad = true;
			return;
		}
		kv += c.n;
		switch (c.type) {
		case '%':
			put_all(l, "%", 1);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);

			if (s == NULL)
				s = "(null)";
			put_str(l, s, c.has_prec ? strnlen(s, c.prec) : strlen(s));
			break;
		}
		case 'd': {
			long long v;

			if (c.len == LEN_NONE)
				v = va_arg(ap, int);
			else if (c.len == LEN_L)
				v = va_arg(ap, long);
			else if (c.len == LEN_LL)
				v = va_arg(ap, long long);
			else
				v = va_arg(ap, ssize_t);
			put_num(l, v < 0 ? -(unsigned long long)v : (unsigned long long)v, v < 0,
			    10);
			break;
		}
		default: {
			unsigned long long v;

			if (c.len == LEN_NONE)
				v = va_arg(ap, unsigned);
			else if (c.len == LEN_L)
				v = va_arg(ap, unsigned long);
			else if (c.len == LEN_LL)
				v = va_arg(ap, unsigned long long);
			else
				v = va_arg(ap, size_t);
			put_num(l, v, false, c.type == 'x' ? 16 : 10);
			break;
		}
		}
	}
}

/* One write(2) of whole lines, retried only to finish it: they are never
 * split across calls unless the kernel takes them in parts (a pipe never
 * does with PIPE_BUF bytes or fewer). Keeps errno for the caller. */
static void
log_write_line(const char *p, size_t n)
{
	int saved = errno;
	ssize_t w;

	while (n > 0) {
		w = write(STDERR_FILENO, p, n);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w == -1 && errno == EINTR)
			continue;
		else if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = STDERR_FILENO, .events = POLLOUT };

			if (poll(&pfd, 1, 1000) <= 0)
				break;
		} else
			break; /* nowhere to say that logging failed */
	}
	errno = saved;
}

/* Lines below LOG_WARN waiting for log_flush while deferral is on. Lines
 * go in whole, and the buffer holds at most PIPE_BUF bytes, so each write
 * of it ends on a line boundary and is atomic on a pipe. */
static struct {
	char buf[LOG_LINE_MAX];
	size_t len;
	void (*arm)(void *);
	void *arg;
	bool armed; /* arm was called and its log_flush has not come yet */
} pending;

static void
pending_write(void)
{
	size_t n = pending.len;

	if (n == 0)
		return;
	pending.len = 0;
	log_write_line(pending.buf, n);
}

void
log_flush(void)
{
	pending.armed = false;
	pending_write();
}

void
log_defer(void (*arm)(void *), void *arg)
{
	/* The next line arms the new function, never the one before. */
	log_flush();
	pending.arm = arm;
	pending.arg = arm != NULL ? arg : NULL;
}

/* A whole line of n <= LOG_LINE_MAX bytes: written now, or buffered until
 * log_flush when deferral is on and the line is below warn. A warn or an
 * error line takes what is buffered with it, in order. */
static void
log_put(enum log_level lvl, const char *p, size_t n)
{
	int saved = errno;

	if (pending.arm == NULL) {
		log_write_line(p, n);
		return;
	}
	if (n > sizeof(pending.buf) - pending.len)
		pending_write();
	memcpy(pending.buf + pending.len, p, n);
	pending.len += n;
	if (lvl >= LOG_WARN)
		pending_write();
	else if (!pending.armed) {
		/* Once per log_flush: the flush asked for is still to come
		 * when a warn line or a full buffer emptied the buffer. */
		pending.armed = true;
		pending.arm(pending.arg);
	}
	errno = saved;
}

static void
log_vemit(enum log_level lvl, const char *msg, const char *kv, va_list ap)
{
	struct line l;

	l.len = 0;
	l.quoted = l.cut = l.bad = false;
	/* No time stamp: journald (or the test harness) adds its own. */
	put_all(&l, "level=", 6);
	put_all(&l, level_names[lvl], strlen(level_names[lvl]));
	put_all(&l, " msg=", 5);
	put_quote(&l);
	put_escaped(&l, msg, strlen(msg));
	put_quote(&l);
	if (kv != NULL && *kv != '\0') {
		put_all(&l, " ", 1);
		line_kv(&l, kv, ap);
	}
	/* TAIL_MAX bytes are left for this. */
	if (l.quoted)
		l.buf[l.len++] = '"';
	if (l.bad) {
		memcpy(l.buf + l.len, MARK_FORMAT, sizeof(MARK_FORMAT) - 1);
		l.len += sizeof(MARK_FORMAT) - 1;
	}
	if (l.cut) {
		memcpy(l.buf + l.len, MARK_CUT, sizeof(MARK_CUT) - 1);
		l.len += sizeof(MARK_CUT) - 1;
	}
	l.buf[l.len++] = '\n';
	log_put(lvl, l.buf, l.len);
}

void
log_emit(enum log_level lvl, const char *msg, const char *kv, ...)
{
	va_list ap;

	va_start(ap, kv);
	log_vemit(lvl, msg, kv, ap);
	va_end(ap);
}

void
fatalx(const char *msg, const char *kv, ...)
{
	va_list ap;

	va_start(ap, kv);
	log_vemit(LOG_ERROR, msg, kv, ap);
	va_end(ap);
	log_flush(); /* exit(3) does not flush the logger's buffer */
	exit(1);
}
